// The store-full policy: an origin write never fails while a snapshot can be given up.
// Unused snapshots of lowest priority go first (oldest first); if all are in use, one is
// squashed; priority 127 is never given up; ENOSPC only when nothing is left.

import Testing
import SnapStore
import SnapStoreTestKit

final class EventLog: @unchecked Sendable {
    var events: [StoreEvent] = []
}

@Suite struct StoreFullTests {
    /// A store with room for about `dataChunks` copy-outs beyond its reserve.
    func tinyStore(events: EventLog) throws -> (Fixture, Store<SimulatedDevice>) {
        var f = Fixture(originBytes: 256 * 4096, storeBytes: 200 * 4096)
        f.options.onEvent = { e in events.events.append(e) }
        return (f, try f.initialize())
    }

    func fill(_ s: Store<SimulatedDevice>, chunks: Range<Int>, seed: UInt64) throws {
        for c in chunks { try s.write(offset: UInt64(c * 4096), pattern(seed &+ UInt64(c), 4096)) }
    }

    @Test func deletesUnusedLowestPriorityOldestFirst() throws {
        let events = EventLog()
        let (_, s) = try tinyStore(events: events)
        try fill(s, chunks: 0..<256, seed: 1)
        try s.createSnapshot(tag: 1, priority: 5)
        try s.createSnapshot(tag: 2, priority: 0)
        try s.createSnapshot(tag: 3, priority: 0)
        try s.adjustUsecount(tag: 3, by: 1)  // in use: not deleted while others can go
        // Writing the whole origin needs 256 copy-outs: far more than the store holds.
        try fill(s, chunks: 0..<256, seed: 2)
        let deleted = events.events.compactMap { e -> UInt64? in
            if case let .snapshotDeletedForSpace(tag, _) = e { return tag }
            return nil
        }
        #expect(deleted.first == 2, "lowest priority first: \(events.events)")
        #expect(deleted.contains(1))
        #expect(!deleted.contains(3))
        // The origin writes all succeeded.
        expectSame(try s.read(offset: 0, length: 4096)[...], pattern(2, 4096)[...], "origin chunk 0")
        let report = try s.check()
        #expect(report.isClean, "\(report.problems)")
    }

    @Test func squashesWhenAllInUseAndReadsFail() throws {
        let events = EventLog()
        let (f, s) = try tinyStore(events: events)
        try fill(s, chunks: 0..<256, seed: 1)
        try s.createSnapshot(tag: 10)
        try s.retain(tag: 10)  // open (attached): in use
        try fill(s, chunks: 0..<256, seed: 2)
        #expect(events.events.contains(.snapshotSquashed(tag: 10, priority: 0)))
        #expect(try s.snapshot(tag: 10)?.squashed == true)
        #expect(throws: StoreError.snapshotSquashed(10)) { try s.read(snapshot: 10, offset: 0, length: 512) }
        // Listed until deleted, also after a restart.
        try s.flush()
        let r = try f.open()
        #expect(try r.snapshot(tag: 10)?.squashed == true)
        try r.deleteSnapshot(tag: 10)
        #expect(try r.snapshots.isEmpty)
        #expect(try r.check().isClean)
    }

    @Test func neverGivesUpPriority127() throws {
        let events = EventLog()
        let (_, s) = try tinyStore(events: events)
        try fill(s, chunks: 0..<256, seed: 1)
        try s.createSnapshot(tag: 1, priority: 127)
        #expect(throws: StoreError.noSpace) { try fill(s, chunks: 0..<256, seed: 2) }
        #expect(try s.snapshot(tag: 1)?.squashed == false)
        // What was written before ENOSPC is consistent; the snapshot is intact.
        expectSame(try s.read(snapshot: 1, offset: 0, length: 256 * 4096)[...],
                   (0..<256).flatMap { pattern(1 &+ UInt64($0), 4096) }[...], "snapshot 1")
        #expect(try s.check().isClean)
        // Deleting it makes room again.
        try s.deleteSnapshot(tag: 1)
        try fill(s, chunks: 0..<256, seed: 3)
    }

    @Test func warnsAtFillLevel() throws {
        let events = EventLog()
        let (_, s) = try tinyStore(events: events)
        // A tiny store: the metadata reserve starts giving snapshots up near 40% here.
        try s.setWarnFillPercent(25)
        try fill(s, chunks: 0..<256, seed: 1)
        try s.createSnapshot(tag: 1)
        try fill(s, chunks: 0..<100, seed: 2)
        #expect(events.events.contains { if case .fillWarning = $0 { return true } else { return false } })
    }
}
