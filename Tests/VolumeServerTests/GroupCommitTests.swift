import Foundation
import SnapStore
import Testing
@testable import VolumeServer
import VolumeInterface

@Suite struct GroupCommitTests {
    /// An NBD burst: its writes join one group commit (one commit for all the copy-outs they
    /// need), and a bad one fails alone.
    @Test func aBurstOfWritesSharesOneCommitAndABadOneFailsAlone() throws {
        let scratch = try ScratchVolume(originBytes: 2 << 20, storeBytes: 32 << 20)
        let host = try scratch.host()
        _ = try host.createSnapshot(tag: 1, name: "", priority: 0)
        let before = try host.withStore { $0.sequence }
        let blocks = (0..<6).map { [UInt8](repeating: UInt8($0 + 1), count: 65536) }
        let offsets: [UInt64] = [0, 65536, 4 << 20, 3 * 65536, 5 * 65536, 7 * 65536]  // the third is past the end
        let failures = try withBuffers(blocks) { host.writeOrigin(burst: Array(zip(offsets, $0))) }
        #expect(failures.map { $0 == nil } == [true, true, false, true, true, true])
        #expect(try host.withStore { $0.sequence } == before + 1, "one commit for the burst's copy-outs")
        for (i, offset) in offsets.enumerated() where i != 2 {
            var got = [UInt8](repeating: 0, count: 65536)
            try got.withUnsafeMutableBytes { try host.read(snapshot: nil, offset: offset, into: $0) }
            #expect(got == blocks[i])
        }
        #expect(try host.check(repair: false).isClean)
    }

    private func withBuffers<T>(_ arrays: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) throws -> T) throws -> T {
        func nest(_ k: Int, _ done: [UnsafeRawBufferPointer]) throws -> T {
            guard k < arrays.count else { return try body(done) }
            return try arrays[k].withUnsafeBytes { try nest(k + 1, done + [$0]) }
        }
        return try nest(0, [])
    }

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
