// Changed-chunk lists that start part way (revert and replication list them in batches).

import Testing
import SnapStore
import SnapStoreTestKit

@Suite struct ChangedChunksTests {
    /// An epoch whose first exception lies below the start still lists those at or after it.
    /// Before the fix, epoch 2 was passed over when asked from chunk 5: its first entry is
    /// chunk 0, and the search went on at epoch 3, so chunk 10 was missing (a revert of more
    /// than 256 changed chunks left some unreverted; a replication listed in batches missed
    /// them).
    @Test func anEpochFoundBelowTheStartIsSearchedFromTheStart() throws {
        let f = Fixture()
        let s = try f.initialize()
        try s.createSnapshot(tag: 1)
        try s.createSnapshot(tag: 2)
        for c in [0, 10, 20] { try s.write(offset: UInt64(c * 4096), pattern(UInt64(c), 4096)) }
        var listed: [UInt64] = []
        try s.changedChunks(from: .snapshot(1), to: .origin, startingAt: 5) { listed.append($0); return true }
        #expect(listed == [10, 20])
        listed = []
        try s.changedChunks(from: .snapshot(1), to: .origin, startingAt: 11) { listed.append($0); return true }
        #expect(listed == [20])
    }

    /// Listed in batches from every start, the union is the whole list (several epochs, each
    /// with chunks on both sides of every start).
    @Test func batchesFromAnyStartJoinToTheWholeList() throws {
        let f = Fixture()
        let s = try f.initialize()
        for round in 0..<4 {
            try s.createSnapshot(tag: UInt64(round + 1))
            for c in stride(from: round, to: 64, by: 3 + round) { try s.write(offset: UInt64(c * 4096), pattern(UInt64(100 * round + c), 4096)) }
        }
        let whole = try s.changedChunks(from: .snapshot(1), to: .origin)
        for batch in 1...7 {
            var joined: [UInt64] = []
            var next: UInt64 = 0
            while true {
                var got: [UInt64] = []
                try s.changedChunks(from: .snapshot(1), to: .origin, startingAt: next) { got.append($0); return got.count < batch }
                if got.isEmpty { break }
                joined += got
                next = got.last! + 1
            }
            #expect(joined == whole, "batches of \(batch)")
        }
    }

    /// A revert of more changed chunks than one batch (256) restores every one of them.
    @Test func aLargeRevertRestoresEveryChunk() throws {
        let f = Fixture(originBytes: 300 * 4096, storeBytes: 2048 * 4096)
        let s = try f.initialize()
        try s.write(offset: 0, pattern(1, 300 * 4096))
        try s.createSnapshot(tag: 1)
        try s.createSnapshot(tag: 2)
        try s.write(offset: 0, pattern(2, 300 * 4096))
        try s.revert(to: 1)
        expectSame(try s.read(offset: 0, length: 300 * 4096)[...], pattern(1, 300 * 4096)[...], "origin after revert")
    }
}
