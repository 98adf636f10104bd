// Many snapshots: 10,000 live snapshots, each holding distinct data, all reading back right;
// deletes free exactly their own chunks.

import Testing
import SnapStore
import SnapStoreTestKit

@Suite struct ScaleTests {
    @Test func tenThousandLiveSnapshots() throws {
        let count = 10_000
        let originChunks = 64
        var f = Fixture(originBytes: originChunks * 4096, storeBytes: 24_000 * 4096)
        f.options.cacheSizeBytes = 256 * 4096
        f.options.selfCheck = false  // a walk of 10,000 records at each of 20,000 commits
        let s = try f.initialize()
        // Snapshot i is taken after writing chunk i % 64 with a stamp of i: every snapshot
        // differs from its neighbours, and each write after a snapshot copies one chunk out.
        func stamp(_ i: Int) -> [UInt8] {
            var b = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 4096)
            b[0] = UInt8(truncatingIfNeeded: i >> 8)
            b[1] = UInt8(truncatingIfNeeded: i >> 16)
            return b
        }
        var latest = [Int](repeating: -1, count: originChunks)
        var expectedAt: [Int: [Int]] = [:]
        for i in 0..<count {
            try s.write(offset: UInt64(i % originChunks) * 4096, stamp(i))
            latest[i % originChunks] = i
            try s.createSnapshot(tag: UInt64(i + 1))
            if i % 997 == 0 || i == count - 1 { expectedAt[i + 1] = latest }
        }
        #expect(try s.snapshots.count == count)
        try s.flush()
        let r = try f.reopenedFromDurable()
        #expect(try r.snapshots.count == count)
        for (tag, chunks) in expectedAt {
            for (c, writer) in chunks.enumerated() {
                let got = try r.read(snapshot: UInt64(tag), offset: UInt64(c) * 4096, length: 4096)
                let want = writer < 0 ? [UInt8](repeating: 0, count: 4096) : stamp(writer)
                #expect(got == want, "snapshot \(tag) chunk \(c)")
            }
        }
        // A changelist between neighbours names exactly the one chunk written in between.
        #expect(try r.changedChunks(from: .snapshot(5000), to: .snapshot(5001)) == [UInt64(5000 % originChunks)])
        // Every exception is shared by the 64 snapshots between two writes of its chunk:
        // snapshot 5000 holds nothing alone until its 63 older neighbours are gone.
        let before = r.status.exceptionCount
        #expect(try r.usage(tag: 5000) == SnapshotUsage(uniqueChunks: 0, sharedChunks: UInt64(originChunks)))
        for tag in UInt64(4937)...4999 { try r.deleteSnapshot(tag: tag) }
        #expect(r.status.exceptionCount == before)
        #expect(try r.usage(tag: 5000) == SnapshotUsage(uniqueChunks: 1, sharedChunks: UInt64(originChunks - 1)))
        // Then deleting it frees exactly that one chunk.
        try r.deleteSnapshot(tag: 5000)
        #expect(r.status.exceptionCount == before - 1)
        let report = try r.check()
        #expect(report.isClean, "\(report.problems.prefix(3))")
    }
}
