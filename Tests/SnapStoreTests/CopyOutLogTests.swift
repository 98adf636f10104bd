// Copy-out log commits: a commit whose only changes are copy-outs writes the copied chunks
// and a superblock that logs them, not the tree nodes and bitmap blocks; open applies the
// log. Any other change, a full log, or a close writes a checkpoint.

import Testing
@testable import SnapStore
import SnapStoreTestKit

@Suite struct CopyOutLogTests {
    func superblock(_ image: [UInt8]) throws -> Superblock {
        try Store<SimulatedDevice>.readSuperblock(SimulatedDevice(path: "store", image: image))
    }

    /// A store with snapshot 1 over a written origin, checkpointed.
    func snapshotted(_ f: Fixture, originChunks: Int) throws -> Store<SimulatedDevice> {
        let s = try f.initialize()
        try s.write(offset: 0, pattern(1, originChunks * f.chunkSize))
        try s.createSnapshot(tag: 1)
        try s.flush()
        return s
    }

    /// A store with snapshot 1 and one copy-out log commit (origin chunk 3 copied out).
    func loggedOnce() throws -> (Fixture, Store<SimulatedDevice>) {
        let f = Fixture()
        let s = try snapshotted(f, originChunks: 64)
        try s.write(offset: 3 * 4096, pattern(2, 4096))
        try s.flush()
        return (f, s)
    }

    @Test func copyOutsAreLoggedUntilTheLogFills() throws {
        let cs = 4096, chunks = 256
        let f = Fixture(originBytes: chunks * cs, storeBytes: 2048 * cs)
        let s = try snapshotted(f, originChunks: chunks)
        let checkpoint = try superblock(f.store.durable)
        #expect(checkpoint.copyOutLog.isEmpty)
        var origin = pattern(1, chunks * cs)
        var logged = 0, checkpoints = 0, longest = 0
        // Every other chunk, so that no two copy-outs join into one entry.
        for (i, c) in stride(from: 0, to: chunks, by: 2).enumerated() {
            let data = pattern(UInt64(100 + i), 512)
            let syncs = f.store.syncs
            try s.write(offset: UInt64(c * cs + 1024), data)
            try s.flush()
            origin.replaceSubrange((c * cs + 1024)..<(c * cs + 1536), with: data)
            #expect(f.store.syncs - syncs == 1, "one flush per copy-out commit, checkpoint or log")
            let sb = try superblock(f.store.durable)
            if sb.copyOutLog.isEmpty {
                checkpoints += 1
                #expect(sb.trees != checkpoint.trees)
            } else {
                logged += 1
                longest = max(longest, sb.copyOutLog.count)
                #expect(sb.copyOutLog.last == CopyOutLogEntry(chunk: UInt64(c), epoch: 1, address: sb.verifiedRuns[0].address, count: 1))
            }
            if i % 16 == 0 || sb.copyOutLog.count == 1 {
                // Power loss now: the log is applied at open.
                let r = try f.reopenedFromDurable()
                expectSame(try r.read(snapshot: 1, offset: 0, length: chunks * cs)[...], pattern(1, chunks * cs)[...], "snapshot after write \(i)")
                expectSame(try r.read(offset: 0, length: chunks * cs)[...], origin[...], "origin after write \(i)")
                #expect(r.status.exceptionCount == UInt64(i + 1))
                #expect(try r.check().isClean)
            }
        }
        #expect(checkpoints >= 1, "a full log is checkpointed")
        #expect(longest >= Superblock.logCapacity(indexCount: checkpoint.indexAddresses.count, runCount: 1) - 1)
        #expect(logged > 100)
        // Rewrites need no copy-out and no commit.
        let syncs = f.store.syncs
        try s.write(offset: 0, pattern(9, cs))
        #expect(f.store.syncs == syncs)
    }

    /// The log covers at most `copyOutLogChunksMax` chunks (the replay at open is bounded).
    @Test func aLogCoversAtMostItsChunkLimit() throws {
        var f = Fixture()
        f.options.copyOutLogChunksMax = 8
        let s = try snapshotted(f, originChunks: 64)
        try s.write(offset: 0, pattern(2, 6 * 4096))
        #expect(try superblock(f.store.durable).copyOutLog.reduce(0) { $0 + $1.count } == 6)
        try s.write(offset: 6 * 4096, pattern(3, 2 * 4096))
        #expect(try superblock(f.store.durable).copyOutLog.reduce(0) { $0 + $1.count } == 8)
        try s.write(offset: 8 * 4096, pattern(4, 4096))
        #expect(try superblock(f.store.durable).copyOutLog.isEmpty, "a ninth chunk is a checkpoint")
        let r = try f.reopenedFromDurable()
        #expect(try r.read(snapshot: 1, offset: 0, length: 64 * 4096) == pattern(1, 64 * 4096))
        #expect(try r.check().isClean)
    }

    @Test func anyOtherChangeIsACheckpoint() throws {
        let (f, s) = try loggedOnce()
        #expect(try !superblock(f.store.durable).copyOutLog.isEmpty)
        try s.flush()
        #expect(try !superblock(f.store.durable).copyOutLog.isEmpty, "a flush with nothing new writes nothing")
        try s.createSnapshot(tag: 2)
        #expect(try superblock(f.store.durable).copyOutLog.isEmpty)

        try s.write(offset: 5 * 4096, pattern(3, 4096))
        try s.flush()
        try s.setPriority(tag: 2, 9)
        #expect(try superblock(f.store.durable).copyOutLog.isEmpty)

        try s.write(offset: 6 * 4096, pattern(4, 4096))
        try s.flush()
        #expect(try !superblock(f.store.durable).copyOutLog.isEmpty)
        try s.close()
        let closed = try superblock(f.store.durable)
        #expect(closed.copyOutLog.isEmpty && closed.verifiedRuns.isEmpty)
        let r = try f.reopenedFromDurable()
        #expect(try r.read(snapshot: 2, offset: 5 * 4096, length: 4096) == Array(pattern(1, 64 * 4096)[(5 * 4096)..<(6 * 4096)]))
        #expect(try r.read(snapshot: 1, offset: 3 * 4096, length: 4096) == Array(pattern(1, 64 * 4096)[(3 * 4096)..<(4 * 4096)]))
        #expect(try r.check().isClean)
    }

    /// A chunk a log commit made durable is pinned when freed before the next checkpoint:
    /// the durable superblock still refers to it.
    @Test func aLoggedChunkFreedBeforeTheCheckpointIsPinned() throws {
        let (f, s) = try loggedOnce()
        let entry = try #require(try superblock(f.store.durable).copyOutLog.first)
        s.space.free(entry.address)
        #expect(s.space.pinned.contains(entry.address))
    }

    @Test func aForgedLogIsRefused() throws {
        let (f, s) = try loggedOnce()
        let sb = try superblock(f.store.durable)
        let entry = try #require(sb.copyOutLog.first)
        func opened(forging change: (inout CopyOutLogEntry) -> Void) -> String? {
            var forged = sb
            change(&forged.copyOutLog[0])
            var image = f.store.durable
            let at = Int(sb.sequence % 2) * 4096
            image.replaceSubrange(at..<(at + 4096), with: forged.encode())
            do {
                _ = try Store(store: SimulatedDevice(path: "store", image: image, identity: 1),
                              origin: SimulatedDevice(path: "origin", image: f.origin.durable, identity: 2), options: f.options)
                return nil
            } catch let e as StoreError {
                guard case .corrupt = e else { return "not corrupt: \(e)" }
                return "\(e)"
            } catch {
                return "\(error)"
            }
        }
        #expect(opened { _ in } == nil, "the log as written opens")
        #expect(opened { $0.epoch = 7 }?.contains("newest snapshot") == true)
        #expect(opened { $0.address = sb.trees[3].root }?.contains("already in use") == true)
        #expect(opened { $0.address = 1 << 40 }?.contains("outside the store") == true)
        #expect(opened { $0.chunk = 64 }?.contains("past every snapshot") == true)
        #expect(opened { $0.count = 0 }?.contains("outside the store") == true)
        #expect(entry.count == 1)
    }
}
