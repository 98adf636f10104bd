// Rolling a damaged store back to its previous commit (issue 18): a node of the newest
// commit whose keys are out of order (well-formed and checksummed, as the tree bug wrote
// them) makes open refuse the store; the previous commit does not use that node.

@testable import SnapStore
import SnapStoreTestKit
import Testing

@Suite struct RollbackTests {
    static let cs = 4096

    /// A store whose newest commit (a checkpoint) wrote a new exceptions root, and whose
    /// previous commit (a copy-out log commit) does not use it. Returns the fixture, the
    /// snapshot contents, and the damaged commit's sequence.
    func damagedStore() throws -> (Fixture, [UInt8], UInt64) {
        let f = Fixture()
        let s = try f.initialize()
        let first = pattern(1, 16 * Self.cs)
        try s.write(offset: 0, first)
        try s.createSnapshot(tag: 1)
        for c in 0..<6 { try s.write(offset: UInt64(c * Self.cs), pattern(UInt64(10 + c), Self.cs)) }
        try s.flush()
        #expect(s.copyOutLogEntryCount > 0, "the previous commit is a log commit")
        let previousRoot = try Store<SimulatedDevice>.readSuperblock(f.store).trees[0].root
        try s.commit(singleFlush: false)  // a checkpoint that lists no runs: damage is not taken for a torn commit
        let sb = try Store<SimulatedDevice>.readSuperblock(f.store)
        #expect(sb.trees[0].root != previousRoot)
        // Swap entries 1 and 2 of the newest exceptions root and seal it again.
        let base = Int(sb.trees[0].root) * Self.cs
        var image = f.store.durable
        let e1 = Array(image[(base + 32 + 24)..<(base + 32 + 48)])
        image.replaceSubrange((base + 32 + 24)..<(base + 32 + 48), with: image[(base + 32 + 48)..<(base + 32 + 72)])
        image.replaceSubrange((base + 32 + 48)..<(base + 32 + 72), with: e1)
        let sum = crc32c(Array(image[(base + 4)..<(base + Self.cs)]), seed: UInt32(0x4E44) &* 0x9E37_79B9)
        for i in 0..<4 { image[base + i] = UInt8(truncatingIfNeeded: sum >> (8 * i)) }
        var damaged = f
        damaged.store = SimulatedDevice(path: "store", image: image, identity: 1)
        damaged.origin = SimulatedDevice(path: "origin", image: f.origin.durable, identity: 2)
        return (damaged, first, sb.sequence)
    }

    @Test func theNewestCommitDamagedRollsBackToTheIntactOne() throws {
        let (f, first, damagedSequence) = try damagedStore()
        // Open reads nodes as they are needed; check reads them all, and writes nothing.
        let before = f.store.current
        let report = try Store.checkWithoutWriting(store: f.store, origin: f.origin, options: f.options)
        #expect(report.problems.contains { $0.contains("keys out of order") }, "\(report.problems)")
        #expect(f.store.current == before, "checking writes nothing")
        let plan = try Store.planRollback(store: f.store, origin: f.origin, options: f.options)
        #expect(f.store.current == before, "planning writes nothing")
        #expect(plan.damaged.sequence == damagedSequence)
        #expect(plan.previous.sequence == damagedSequence - 1)
        #expect(plan.damage.contains("keys out of order"), "\(plan.damage)")
        #expect(plan.losses.first?.contains("commit \(damagedSequence)") == true, "\(plan.losses)")
        try Store.rollBack(plan, store: f.store)
        let s = try f.open()
        #expect(s.sequence == damagedSequence - 1)
        #expect(try s.check().isClean)
        expectSame(try s.read(snapshot: 1, offset: 0, length: first.count)[...], first[...], "snapshot 1 after the rollback")
        // The store goes on: commits after the rollback open again.
        try s.write(offset: 8 * UInt64(Self.cs), pattern(99, Self.cs))
        try s.close()
        #expect(try f.open().check().isClean)
    }

    @Test func nothingToRollBackOrNothingToRollBackTo() throws {
        // A clean store: refused, nothing written.
        let f = Fixture()
        let s = try f.initialize()
        try s.createSnapshot(tag: 1)
        try s.close()
        #expect(throws: StoreError.invalidArgument("the newest commit \(s.sequence) opens and checks clean: nothing to roll back")) {
            try Store.planRollback(store: f.store, origin: f.origin, options: f.options)
        }
        // Both commits damaged: the other slot overwritten with the damaged one's twin.
        let (d, _, sequence) = try damagedStore()
        var image = d.store.current
        var older = try Store<SimulatedDevice>.decodeSlots(d.store).found[1]
        older.trees[0] = try Store<SimulatedDevice>.readSuperblock(d.store).trees[0]
        let slot = Int(older.sequence % 2) * Self.cs
        image.replaceSubrange(slot..<(slot + Format.superblockBytes), with: older.encode())
        do {
            _ = try Store.planRollback(store: SimulatedDevice(path: "store", image: image, identity: 1), origin: d.origin, options: d.options)
            Issue.record("a rollback to a damaged commit was planned")
        } catch let e as StoreError {
            #expect("\(e)".contains("commit \(sequence) is damaged") && "\(e)".contains("damaged too"), "\(e)")
        }
    }
}
