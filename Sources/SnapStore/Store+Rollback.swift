// Rolling a damaged store back to its previous commit. The two superblock slots hold the
// newest commit and the one before it, and a commit never writes a block the one before it
// uses (INVARIANTS 8), so when the newest commit's metadata is damaged, the previous one may
// still be whole. Whether it is, is found out by opening and checking it on an overlay that
// keeps every write in memory; only a confirmed rollback writes, and all it writes is zeros
// over the newest superblock slot, so that open takes the other one. A crash during that
// write leaves the slot torn, which open also refuses: the outcome is the same.

/// What a rollback would keep and lose.
public struct RollbackPlan: Sendable {
    /// The commit open takes today, and why it cannot be used.
    public var damaged: Superblock
    public var damage: String
    /// The commit a rollback opens: it opens and checks clean.
    public var previous: Superblock
    /// Chunks the previous commit leaves marked in use and unreferenced (`check --repair`
    /// frees them after the rollback).
    public var previousLeakedChunks: UInt64
    /// What is lost, one line each.
    public var losses: [String]
}

extension Store {
    /// Examines both commits of `store` without writing to it. Returns the plan when the commit
    /// open takes is damaged (does not open, or checks with problems) and the other slot's
    /// commit is older, complete, opens and checks clean (leaks aside). Throws, saying why,
    /// when there is nothing to roll back or nothing intact to roll back to.
    public static func planRollback(store: Device, origin: Device, options: StoreOptions = StoreOptions()) throws -> RollbackPlan {
        var quiet = options
        quiet.onEvent = { _ in }
        quiet.selfCheck = false
        let current = try readSuperblock(store)
        let damage: String
        switch inspect(current, store: store, origin: origin, options: quiet) {
        case let .damaged(reason):
            damage = reason
        case let .intact(leaks):
            throw StoreError.invalidArgument("the newest commit \(current.sequence) opens and checks clean\(leaks > 0 ? " but for \(leaks) leaked chunks (check --repair frees them)" : ""): nothing to roll back")
        }
        let (slots, _, _) = try decodeSlots(store)
        guard let previous = slots.first(where: { $0.sequence < current.sequence }) else {
            throw StoreError.corrupt("commit \(current.sequence) is damaged (\(damage)) and the other superblock slot holds no older commit to roll back to")
        }
        do {
            try verifyRuns(of: previous, on: store)
        } catch {
            throw StoreError.corrupt("commit \(current.sequence) is damaged (\(damage)), and the previous commit \(previous.sequence) is incomplete too (\(error))")
        }
        switch inspect(previous, store: store, origin: origin, options: quiet) {
        case let .damaged(reason):
            throw StoreError.corrupt("commit \(current.sequence) is damaged (\(damage)), and the previous commit \(previous.sequence) is damaged too (\(reason)); no commit to roll back to")
        case let .intact(leaks):
            return RollbackPlan(damaged: current, damage: damage, previous: previous, previousLeakedChunks: leaks,
                                losses: losses(from: current, to: previous))
        }
    }

    /// Carries out `plan`: zeros over the damaged commit's superblock slot, then a sync. The
    /// store is checked to be as the plan saw it first. Open then takes the previous commit.
    public static func rollBack(_ plan: RollbackPlan, store: Device) throws {
        let current = try readSuperblock(store)
        guard current == plan.damaged else {
            throw StoreError.invalidArgument("the store changed since it was examined (commit \(current.sequence), not \(plan.damaged.sequence)); examine it again")
        }
        let slot = Format.superblockSlots[Int(current.sequence % 2)]
        try store.write([UInt8](repeating: 0, count: Format.superblockBytes), at: slot * UInt64(current.chunkSizeBytes))
        try store.sync()
        let now = try readSuperblock(store)
        guard now.sequence == plan.previous.sequence else {
            throw StoreError.corrupt("after the rollback open takes commit \(now.sequence), not \(plan.previous.sequence)")
        }
    }

    private enum Inspection {
        case intact(leakedChunks: UInt64)
        case damaged(String)
    }

    /// `check` without writing to the devices: the store (the commit `superblock`, or the one
    /// open takes) is opened on overlays, which keep the writes of open and of the checkpoint
    /// `check` starts with in memory. A damaged store is thus checked without its previous
    /// commit being overwritten. Throws what open throws.
    public static func checkWithoutWriting(store: Device, origin: Device, superblock: Superblock? = nil,
                                           options: StoreOptions = StoreOptions()) throws -> CheckReport {
        let sb = try superblock ?? readSuperblock(store, onEvent: options.onEvent)
        var quiet = options
        quiet.selfCheck = false
        let s = try Store<OverlayDevice<Device>>(store: OverlayDevice(store), origin: OverlayDevice(origin),
                                                 superblock: sb, options: quiet)
        return try s.check()
    }

    /// Opens the commit `sb` on overlays and checks it.
    private static func inspect(_ sb: Superblock, store: Device, origin: Device, options: StoreOptions) -> Inspection {
        do {
            let report = try checkWithoutWriting(store: store, origin: origin, superblock: sb, options: options)
            if let first = report.problems.first {
                return .damaged(report.problems.count == 1 ? first : "\(first), and \(report.problems.count - 1) more problems")
            }
            return .intact(leakedChunks: report.leakedChunkCount)
        } catch {
            return .damaged("\(error)")
        }
    }

    /// What the newer commit held that the older one does not, as far as the two superblocks
    /// tell (the newer one's trees may be unreadable).
    private static func losses(from newer: Superblock, to older: Superblock) -> [String] {
        var out = ["every change of commit\(newer.sequence - older.sequence > 1 ? "s \(older.sequence + 1)...\(newer.sequence)" : " \(newer.sequence)") (the newest)"]
        if newer.epochLast > older.epochLast {
            let n = newer.epochLast - older.epochLast
            out.append("\(n) snapshot\(n == 1 ? "" : "s") created in it (epochs \(older.epochLast + 1)...\(newer.epochLast))")
        }
        if newer.snapshotCount != older.snapshotCount {
            out.append("snapshot records: \(newer.snapshotCount) in the newest commit, \(older.snapshotCount) after the rollback")
        }
        let (e1, e0) = (newer.trees[0].count, older.trees[0].count)
        if e1 > e0 {
            out.append("\(e1 - e0) copy-outs made in it: snapshots that shared those origin chunks read the origin there, which may have been written since")
        } else if e1 < e0 {
            out.append("\(e0 - e1) exceptions freed in it come back (deletes since are undone)")
        }
        let (p1, p0) = (newer.trees[2].count, older.trees[2].count)
        if p1 != p0 { out.append("writes to writable snapshots: \(p1) private chunks in the newest commit, \(p0) after the rollback") }
        if newer.originSizeBytes != older.originSizeBytes {
            out.append("the origin size goes back from \(formatCount(newer.originSizeBytes)) to \(formatCount(older.originSizeBytes)) bytes")
        }
        if newer.storeChunkCount != older.storeChunkCount {
            out.append("the store size goes back from \(newer.storeChunkCount) to \(older.storeChunkCount) chunks")
        }
        let logged = newer.copyOutLog.filter { !older.copyOutLog.contains($0) }
        if !logged.isEmpty {
            let chunks = logged.prefix(8).map { $0.count == 1 ? "\($0.chunk)" : "\($0.chunk)...\($0.chunk + UInt64($0.count) - 1)" }
            out.append("origin chunks copied out in it: \(chunks.joined(separator: ", "))\(logged.count > 8 ? ", ..." : "")")
        }
        return out
    }
}
