// Single-flush commits: a small commit lists its chunks with checksums in the superblock and
// takes one flush; open refuses it (and uses the previous commit) when any run does not read
// back; large commits and clean closes keep the two-flush order.

import Testing
import SnapStore
import SnapStoreTestKit

@Suite struct VerifiedCommitTests {
    func superblock(_ image: [UInt8]) throws -> Superblock {
        try Store<SimulatedDevice>.readSuperblock(SimulatedDevice(path: "store", image: image))
    }

    @Test func smallCommitsTakeOneFlushLargeOnesTwo() throws {
        let cs = 16384
        let f = Fixture(originBytes: 512 * cs, storeBytes: 2048 * cs, chunkSize: cs)
        let s = try f.initialize()
        try s.write(offset: 0, pattern(1, 512 * cs))
        try s.flush()
        var syncs = f.store.syncs
        try s.createSnapshot(tag: 1)
        #expect(f.store.syncs - syncs == 1, "a snapshot create is one flush")
        var sb = try superblock(f.store.current)
        #expect(!sb.verifiedRuns.isEmpty)
        #expect(sb.featuresIncompat == Format.incompatTagIndex, "the verified-commit bit is implied by the runs")

        // A copy-out of one chunk is a copy-out log commit: it lists its one data chunk, and
        // the log names it.
        let checkpoint = sb
        syncs = f.store.syncs
        try s.write(offset: 5 * UInt64(cs), pattern(2, cs))
        #expect(f.store.syncs - syncs == 1)
        sb = try superblock(f.store.current)
        #expect(sb.verifiedRuns.map(\.count) == [1])
        #expect(sb.copyOutLog.count == 1 && sb.copyOutLog.first?.address == sb.verifiedRuns.first?.address)

        // 256 chunks of copy-outs (4 MiB) are more than a single-flush commit may list: the
        // data is flushed before the superblock that logs it.
        syncs = f.store.syncs
        try s.write(offset: 256 * UInt64(cs), pattern(3, 256 * cs))
        #expect(f.store.syncs - syncs == 2)
        sb = try superblock(f.store.current)
        #expect(sb.verifiedRuns.isEmpty)
        #expect(sb.copyOutLog.reduce(0) { $0 + Int($1.count) } == 257)
        #expect(sb.trees == checkpoint.trees, "log commits write no tree node")
        #expect(try s.read(snapshot: 1, offset: 0, length: 512 * cs) == pattern(1, 512 * cs))
    }

    @Test func aDamagedLastCommitGivesThePreviousOne() throws {
        let f = Fixture()
        let s = try f.initialize()
        try s.write(offset: 0, pattern(1, 64 * 4096))
        try s.createSnapshot(tag: 1)
        try s.flush()
        let before = try superblock(f.store.durable)
        try s.write(offset: 3 * 4096, pattern(2, 4096))   // copy-out + commit, then the origin write
        try s.flush()
        let image = f.store.durable
        let sb = try superblock(image)
        #expect(sb.sequence > before.sequence)
        #expect(!sb.verifiedRuns.isEmpty && !sb.copyOutLog.isEmpty)
        /// Opens the store image with the durable origin, recording the events of the open.
        func open(_ storeImage: [UInt8]) throws -> (Store<SimulatedDevice>, EventLog) {
            let events = EventLog()
            var options = f.options
            options.onEvent = { events.events.append($0) }
            let s = try Store(store: SimulatedDevice(path: "store", image: storeImage, identity: 1),
                              origin: SimulatedDevice(path: "origin", image: f.origin.durable, identity: 2),
                              options: options)
            return (s, events)
        }
        // Every listed run matters: damage in any of them refuses the commit.
        for run in sb.verifiedRuns {
            var bad = image
            bad[Int(run.address) * 4096 + 100] ^= 0x40
            let (reopened, events) = try open(bad)
            #expect(reopened.status.sequence == before.sequence, "run at \(run.address)")
            #expect(try reopened.check().isClean)
            // The administrator hears that the last commit was skipped.
            guard case let .incompleteCommitSkipped(skipped, opened, reason)? = events.events.first else {
                Issue.record("no event for the skipped commit: \(events.events)")
                continue
            }
            #expect(skipped == sb.sequence && opened == before.sequence && reason.contains("checksum"))
        }
        // Undamaged, the commit stands, the snapshot reads its copy, and nothing is reported.
        let (reopened, events) = try open(image)
        #expect(events.events.isEmpty)
        #expect(reopened.status.sequence == sb.sequence)
        #expect(try reopened.read(snapshot: 1, offset: 3 * 4096, length: 4096) == Array(pattern(1, 64 * 4096)[(3 * 4096)..<(4 * 4096)]))
    }

    @Test func aCleanCloseListsNoRuns() throws {
        let f = Fixture()
        let s = try f.initialize()
        try s.createSnapshot(tag: 1)
        #expect(!(try superblock(f.store.durable)).verifiedRuns.isEmpty)
        try s.close()
        #expect(try superblock(f.store.durable).verifiedRuns.isEmpty)
        #expect(try f.reopenedFromDurable().snapshots.map(\.tag) == [1])
    }

    /// A private chunk listed by the newest commit is rewritten in place only after a
    /// two-flush commit: otherwise the rewrite (durable or not) would make open refuse
    /// that commit and lose the snapshot write before it.
    @Test func rewritingAListedPrivateChunkKeepsItsCommit() throws {
        let f = Fixture()
        let s = try f.initialize()
        try s.write(offset: 0, pattern(1, 64 * 4096))
        try s.createSnapshot(tag: 1)
        try s.write(snapshot: 1, offset: 7 * 4096, pattern(2, 100))
        try s.flush()
        let listed = try superblock(f.store.durable)
        #expect(!listed.verifiedRuns.isEmpty)
        try s.write(snapshot: 1, offset: 7 * 4096 + 200, pattern(3, 100))
        // A crash now, with the in-place rewrite on disk but never flushed.
        let reopened = try Store(store: SimulatedDevice(path: "store", image: f.store.current, identity: 1),
                                 origin: SimulatedDevice(path: "origin", image: f.origin.durable, identity: 2),
                                 options: f.options)
        #expect(reopened.status.sequence > listed.sequence)
        #expect(try reopened.read(snapshot: 1, offset: 7 * 4096, length: 100) == pattern(2, 100))
        #expect(try reopened.check().isClean)
    }

    @Test func aStoreWhoseOnlyCommitIsIncompleteIsNotAStore() throws {
        let f = Fixture()
        _ = try f.initialize()
        var image = f.store.durable
        let sb = try superblock(image)
        let run = try #require(sb.verifiedRuns.first)  // initialize of a store this size lists its blocks
        image[Int(run.address) * 4096 + 64] ^= 1
        do {
            _ = try superblock(image)
            Issue.record("an incomplete first commit opened")
        } catch let e as StoreError {
            guard case .notAStore = e else { Issue.record("expected notAStore, got \(e)"); return }
        }
    }
}
