import Foundation
import SnapStore
import Testing
@testable import VolumeServer
import VolumeInterface

@Suite struct GroupCommitTests {
    /// Writers on several threads while snapshots are taken: each snapshot keeps exactly
    /// the origin as it was when it was taken (recorded atomically with the create), and
    /// the store checks clean.
    @Test func concurrentWritersAndSnapshots() throws {
        let scratch = try ScratchVolume(originBytes: 2 << 20, storeBytes: 32 << 20)
        let host = try scratch.host()
        let originBytes = 2 << 20
        let writers = 4
        let writesEach = 300
        let group = DispatchGroup()
        for w in 0..<writers {
            group.enter()
            Thread.detachNewThread {
                var rng = UInt64(w + 1) &* 0x9E37_79B9_7F4A_7C15
                for i in 0..<writesEach {
                    rng = rng &* 6364136223846793005 &+ 1442695040888963407
                    let length = [512, 4096, 9000, 65536][Int(rng >> 60) & 3]
                    let offset = UInt64(Int(rng >> 20) % (originBytes - length))
                    let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: w * 64 + i), count: length)
                    try! bytes.withUnsafeBytes { try host.write(snapshot: nil, offset: offset, $0) }
                }
                group.leave()
            }
        }
        var images: [UInt64: [UInt8]] = [:]
        for tag in UInt64(1)...20 {
            usleep(2000)
            images[tag] = try host.withStore { s in
                _ = try s.createSnapshot(tag: tag)
                return try s.read(snapshot: nil, offset: 0, length: originBytes)
            }
        }
        group.wait()
        try host.flush()
        for (tag, image) in images {
            var read = [UInt8](repeating: 0, count: originBytes)
            try read.withUnsafeMutableBytes { try host.read(snapshot: tag, offset: 0, into: $0) }
            #expect(read == image, "snapshot \(tag) changed")
        }
        let report = try host.check(repair: false)
        #expect(report.isClean, "\(report.problems)")
    }

    @Test func badRangeFailsAloneAndInUseRefusals() throws {
        let scratch = try ScratchVolume()
        let host = try scratch.host()
        let bytes = [UInt8](repeating: 1, count: 4096)
        #expect(throws: StoreError.self) {
            try bytes.withUnsafeBytes { try host.write(snapshot: nil, offset: UInt64(4 << 20) - 100, $0) }
        }
        _ = try host.createSnapshot(tag: 1, name: "", priority: 0)
        try host.open(snapshot: 1, writable: false)
        #expect(throws: VolumeError.inUse("snapshot 1 is in use (1 open: attached or exported); detach it first")) {
            _ = try host.deleteSnapshot(tag: 1)
        }
        #expect(throws: VolumeError.self) { try host.open(snapshot: 1, writable: true) }
        #expect(throws: VolumeError.self) { try bytes.withUnsafeBytes { try host.write(snapshot: 1, offset: 0, $0) } }
        host.close(snapshot: 1)
        try host.open(snapshot: nil, writable: true)
        #expect(throws: VolumeError.self) { _ = try host.revert(to: 1) }
        host.close(snapshot: nil)
        #expect(try host.revert(to: 1) >= 0)
        #expect(try host.deleteSnapshot(tag: 1) >= 0)
    }
}
