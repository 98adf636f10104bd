// Snapshot lifecycle: create (constant time), delete and squash (release of exactly the
// chunks no remaining snapshot needs, in batches with a commit between them, resumable after
// a crash), priority, use counts, and the store-full policy.

public struct SnapshotInfo: Equatable, Sendable, Codable {
    public var tag: UInt64
    public var epoch: UInt64
    public var createdNanoseconds: UInt64
    public var originSizeBytes: UInt64
    public var priority: Int8
    public var usecount: UInt32
    public var openCount: Int
    public var squashed: Bool
    public var name: String
}

extension Store {
    // MARK: The snapshot table

    /// The record of `epoch`, from the snapshots tree.
    func record(epoch: UInt64) throws -> SnapshotRecord? {
        guard let words = try snapshotTree.values(Key(epoch, 0)) else { return nil }
        return try SnapshotRecord.decode(epoch: epoch, words: words, where: "snapshots tree")
    }

    /// The record `tag` names (any state), through the tags tree.
    func anyRecord(tag: UInt64) throws -> SnapshotRecord? {
        if let r = recentRecords[tag] { return r }
        guard let epoch = try tagTree.find(Key(tag, 0)) else { return nil }
        guard let r = try record(epoch: epoch), r.tag == tag else {
            throw StoreError.corrupt("tags tree: tag \(tag) names epoch \(epoch), which has no record of that tag")
        }
        if recentRecords.count >= 64 { recentRecords.removeAll(keepingCapacity: true) }
        recentRecords[tag] = r
        return r
    }

    /// The user-visible record for `tag` (normal or squashed), or `.snapshotMissing`.
    func record(tag: UInt64) throws -> SnapshotRecord {
        guard let r = try anyRecord(tag: tag), r.isListed else {
            throw StoreError.snapshotMissing(tag)
        }
        return r
    }

    /// Visits records in epoch order from `epoch` (or backwards from it) until `visit`
    /// returns false. The snapshots tree must not change meanwhile.
    func forEachRecord(from epoch: UInt64 = 0, backward: Bool = false, _ visit: (SnapshotRecord) throws -> Bool) throws {
        let body: (Key, Node, Int) throws -> Bool = { key, node, i in
            try visit(try SnapshotRecord.decode(epoch: key.hi, words: node.values(i), where: "block \(node.address) (snapshots leaf)"))
        }
        if backward {
            try snapshotTree.scanBackward(from: Key(epoch, 0), body)
        } else {
            try snapshotTree.scan(from: Key(epoch, 0), body)
        }
    }

    /// The first normal epoch at or after `epoch` (backward: at or before it); nil when
    /// none. A walk past the few squashed or dying records in between.
    func firstLive(from epoch: UInt64, backward: Bool = false) throws -> UInt64? {
        var found: UInt64?
        try forEachRecord(from: epoch, backward: backward) { r in
            guard r.state == .normal else { return true }
            found = r.epoch
            return false
        }
        return found
    }

    /// How many records are in `state`.
    func recordCount(_ state: SnapshotState) -> Int { stateCounts[Int(state.rawValue)] }

    /// The newest normal epoch: a walk back from the end past the few squashed or dying ones.
    func refreshNewestLive() throws {
        epochNewestLive = try firstLive(from: .max, backward: true) ?? 0
    }

    /// Counts a normal snapshot's size in or out, and keeps `snapshotChunksMax`.
    func countSize(of r: SnapshotRecord, by delta: Int) {
        let chunks = (r.originSizeBytes + chunkSize - 1) / chunkSize
        let n = normalSizeCounts[chunks, default: 0] + delta
        precondition(n >= 0)
        normalSizeCounts[chunks] = n == 0 ? nil : n
        snapshotChunksMax = normalSizeCounts.keys.max() ?? 0
    }

    /// Live (normal) epochs just before and just after `epoch`: 0 / UInt64.max when none.
    func liveNeighbours(of epoch: UInt64) throws -> (previous: UInt64, next: UInt64) {
        let previous = epoch == 0 ? nil : try firstLive(from: epoch - 1, backward: true)
        let next = epoch == .max ? nil : try firstLive(from: epoch + 1)
        return (previous ?? 0, next ?? .max)
    }

    func info(_ r: SnapshotRecord) -> SnapshotInfo {
        SnapshotInfo(tag: r.tag, epoch: r.epoch, createdNanoseconds: r.createdNanoseconds, originSizeBytes: r.originSizeBytes,
                     priority: r.priority, usecount: r.usecount, openCount: openCounts[r.tag] ?? 0,
                     squashed: r.state == .squashed, name: r.name)
    }

    /// Snapshots users can see, oldest first (read from the snapshots tree).
    public var snapshots: [SnapshotInfo] {
        get throws {
            var out: [SnapshotInfo] = []
            try forEachRecord { r in
                if r.isListed { out.append(info(r)) }
                return true
            }
            return out
        }
    }

    /// The snapshot `tag` names; nil when there is none. Throws only when the store
    /// cannot be read.
    public func snapshot(tag: UInt64) throws -> SnapshotInfo? {
        guard let r = try anyRecord(tag: tag), r.isListed else { return nil }
        return info(r)
    }

    /// Tags of the snapshots opened in this process (attached devices, exports).
    public var openSnapshotTags: [UInt64] { openCounts.keys.sorted() }
    public func openCount(tag: UInt64) -> Int { openCounts[tag] ?? 0 }

    /// Writes `r` into the snapshots tree (and a new one into the tags tree), keeping the
    /// derived values.
    func store(_ r: SnapshotRecord) throws {
        let old = try record(epoch: r.epoch)
        var words = [UInt64](repeating: 0, count: SnapshotRecord.words)
        r.encode(into: &words, at: 0)
        recentRecords.removeAll(keepingCapacity: true)
        try snapshotTree.upsert(Key(r.epoch, 0), words)
        stateCounts[Int(r.state.rawValue)] += 1
        if let old {
            precondition(old.tag == r.tag, "a snapshot keeps its tag")
            stateCounts[Int(old.state.rawValue)] -= 1
            let wasNormal = old.state == .normal
            precondition(wasNormal || r.state != .normal, "a snapshot never becomes normal again")
            if wasNormal && r.state != .normal {
                countSize(of: r, by: -1)
                try refreshNewestLive()
            }
        } else {
            precondition(r.epoch == superblock.epochLast, "epochs only grow")
            try tagTree.upsert(Key(r.tag, 0), r.epoch)
            // A new snapshot is the newest: update the derived values in constant time.
            if r.state == .normal {
                epochNewestLive = r.epoch
                countSize(of: r, by: 1)
            }
        }
    }

    // MARK: Create

    /// Takes a snapshot of the origin as it is now. Constant time: a record and a commit.
    @discardableResult
    /// `createdNanoseconds` (a replica taking its source's snapshot) replaces the clock's time.
    public func createSnapshot(tag: UInt64, name: String = "", priority: Int8 = 0, createdNanoseconds: UInt64? = nil) throws -> SnapshotInfo {
        try checkUsable()
        guard try tagTree.find(Key(tag, 0)) == nil else { throw StoreError.snapshotExists(tag) }
        guard name.utf8.count <= Format.snapshotNameMax else {
            throw StoreError.invalidArgument("snapshot name is longer than \(Format.snapshotNameMax) bytes")
        }
        try ensureSpace(chunks: 0)
        // Origin writes acknowledged before the snapshot must be in it for good.
        try originDevice.sync()
        return try mutate {
            superblock.epochLast += 1
            superblockDirty = true
            var r = SnapshotRecord(tag: tag, epoch: superblock.epochLast, createdNanoseconds: createdNanoseconds ?? options.clock(),
                                   originSizeBytes: superblock.originSizeBytes)
            r.name = name
            r.priority = priority
            try store(r)
            try commit()
            // Nothing is protected against the new snapshot yet.
            protected.removeAll()
            return info(r)
        }
    }

    // MARK: Delete and squash

    /// Deletes a snapshot, freeing exactly the chunks no other snapshot needs.
    public func deleteSnapshot(tag: UInt64) throws {
        try checkUsable()
        var r = try record(tag: tag)
        try mutate {
            if r.state == .squashed {
                // Its data went when it was squashed; only the record is left.
                try removeRecord(r)
            } else {
                try releaseData(of: &r, as: .deleting)
            }
            try commit()
        }
    }

    /// Gives up a snapshot's data but keeps it listed (reads fail) until deleted.
    public func squashSnapshot(tag: UInt64) throws {
        try checkUsable()
        var r = try record(tag: tag)
        guard r.state == .normal else { return }
        try mutate {
            try releaseData(of: &r, as: .squashing)
            try commit()
        }
    }

    /// Marks `r` deleting or squashing (durably, with its cursor at the start) and releases
    /// its data.
    private func releaseData(of r: inout SnapshotRecord, as state: SnapshotState) throws {
        try ensureReleaseSpace()
        r.state = state
        r.cursorEpoch = r.epoch
        r.cursorChunk = 0
        try store(r)
        try release(epoch: r.epoch)
    }

    private func removeRecord(_ r: SnapshotRecord) throws {
        guard let old = try record(epoch: r.epoch) else { preconditionFailure("removal of unknown epoch \(r.epoch)") }
        recentRecords.removeAll(keepingCapacity: true)
        try snapshotTree.remove(Key(r.epoch, 0))
        guard try tagTree.remove(Key(old.tag, 0)) else { throw StoreError.corrupt("tags tree: snapshot \(old.tag) (epoch \(old.epoch)) is missing") }
        stateCounts[Int(old.state.rawValue)] -= 1
        if old.state == .normal { countSize(of: old, by: -1) }
        openCounts[r.tag] = nil
        try refreshNewestLive()
        superblockDirty = true
    }

    /// Finishes deletes and squashes a crash interrupted (found by the counts kept at open,
    /// so a store with none pays no scan).
    func resumePendingReleases() throws {
        while recordCount(.deleting) + recordCount(.squashing) > 0 {
            var pending: UInt64?
            try forEachRecord { r in
                guard r.state == .deleting || r.state == .squashing else { return true }
                pending = r.epoch
                return false
            }
            guard let epoch = pending else { throw StoreError.corrupt("snapshot counts promise an unfinished delete that no record shows") }
            try mutate {
                try release(epoch: epoch)
                try commit()
            }
        }
    }

    /// Frees the private chunks and the exceptions that die with snapshot `epoch` (already
    /// marked deleting or squashing, so it no longer counts as live), then drops or marks
    /// the record. Batches commit in between so memory stays bounded; the record's cursor
    /// says where to resume.
    ///
    /// Which exceptions die: an exception (c, e) is live while some live snapshot t has
    /// e_prev < t <= e (e_prev: c's previous exception). Only the exceptions the snapshot
    /// reads can die, and with p/n the live neighbours of s those are the ones with
    /// s <= e < n (at most one per chunk). Such an exception dies unless p > e_prev.
    func release(epoch s: UInt64) throws {
        guard var r = try record(epoch: s) else { preconditionFailure("release of unknown epoch \(s)") }
        precondition(r.state == .deleting || r.state == .squashing)
        try releasePrivateChunks(epoch: s)
        try releaseExceptions(&r)
        if r.state == .deleting {
            try ensureReleaseSpace()
            try removeRecord(r)
        } else {
            r.state = .squashed
            r.cursorEpoch = 0
            r.cursorChunk = 0
            try store(r)
        }
        superblockDirty = true
    }

    /// Entries freed per batch of a release; a full batch ends in a commit of its own.
    private var releaseBatchMax: Int { options.releaseBatchEntries }

    /// Frees the chunks only snapshot `s` used (written to the snapshot itself).
    private func releasePrivateChunks(epoch s: UInt64) throws {
        while true {
            var batch: [(Key, UInt64)] = []
            try privateChunks.scan(from: Key(s, 0)) { key, node, i in
                guard key.hi == s, batch.count < releaseBatchMax else { return false }
                batch.append((key, node.value(i)))
                return true
            }
            if batch.isEmpty { break }
            for (key, chunk) in batch {
                try ensureReleaseSpace()
                try privateChunks.remove(key)
                space.free(chunk)
            }
            // A short batch was the last: the caller's commit covers it (a small delete is
            // one commit, atomic like any other).
            if batch.count < releaseBatchMax { break }
            try commit()
        }
    }

    /// Frees the exceptions that die with the snapshot of record `r`, from the cursor the
    /// record keeps (so a release cut by a crash goes on where its last commit left it).
    private func releaseExceptions(_ r: inout SnapshotRecord) throws {
        let (previous, next) = try liveNeighbours(of: r.epoch)
        var cursor = Key(r.cursorEpoch, r.cursorChunk)
        while true {
            var batch: [(epoch: UInt64, chunk: UInt64, at: UInt64)] = []
            try exceptionsByEpoch.scan(from: cursor) { key, node, i in
                guard key.hi < next, batch.count < releaseBatchMax else { return false }
                batch.append((key.hi, key.lo, node.value(i)))
                return true
            }
            if batch.isEmpty { break }
            for e in batch {
                let before = try exceptionsByChunk.floor(Key(e.chunk, e.epoch - 1))
                let epochPrevious = before.map { $0.key.hi == e.chunk ? $0.key.lo : 0 } ?? 0
                if previous == 0 || previous <= epochPrevious {
                    try ensureReleaseSpace()
                    try exceptionsByChunk.remove(Key(e.chunk, e.epoch))
                    try exceptionsByEpoch.remove(Key(e.epoch, e.chunk))
                    space.free(e.at)
                    protected.remove(e.chunk)
                }
            }
            let last = batch[batch.count - 1]
            cursor = last.chunk == .max ? Key(last.epoch + 1, 0) : Key(last.epoch, last.chunk + 1)
            r.cursorEpoch = cursor.hi
            r.cursorChunk = cursor.lo
            try ensureReleaseSpace()
            try store(r)
            if batch.count < releaseBatchMax { break }
            try commit()
        }
    }

    // MARK: Priority and use counts

    public func setPriority(tag: UInt64, _ priority: Int8) throws {
        try checkUsable()
        var r = try record(tag: tag)
        try ensureSpace(chunks: 0)
        try mutate {
            r.priority = priority
            try store(r)
            try commit()
        }
    }

    /// Adds `delta` to the persistent use count; returns the new count.
    @discardableResult
    public func adjustUsecount(tag: UInt64, by delta: Int64) throws -> UInt32 {
        try checkUsable()
        var r = try record(tag: tag)
        let updated = Int64(r.usecount) + delta
        guard updated >= 0 else { throw StoreError.usecountUnderflow(tag) }
        guard updated <= Int64(UInt32.max) else { throw StoreError.usecountOverflow(tag) }
        try ensureSpace(chunks: 0)
        return try mutate {
            r.usecount = UInt32(updated)
            try store(r)
            try commit()
            return r.usecount
        }
    }

    /// In-process opens (an attached device, an NBD export): such a snapshot is "in use".
    public func retain(tag: UInt64) throws {
        _ = try record(tag: tag)
        openCounts[tag, default: 0] += 1
    }

    public func releaseOpen(tag: UInt64) {
        guard let n = openCounts[tag] else { return }
        openCounts[tag] = n > 1 ? n - 1 : nil
    }

    // MARK: Store full

    /// Per-operation metadata reserve: node shadows and splits along a few tree paths.
    static func reservePerOperation(heights: UInt64) -> UInt64 { 8 * (heights + 4) }

    var reservePerOperation: UInt64 {
        let h = UInt64(exceptionsByChunk.root.height + exceptionsByEpoch.root.height +
                       privateChunks.root.height + snapshotTree.root.height + tagTree.root.height)
        return Store.reservePerOperation(heights: h)
    }

    /// Makes sure `chunks` data chunks plus the metadata reserve can be allocated without
    /// failing half way. Commits to release pinned chunks, then gives up snapshots as
    /// DESIGN.md says: the unused snapshot of lowest priority (oldest first), else squash the
    /// in-use one of lowest priority; priority 127 is never given up. Throws `.noSpace`
    /// (changing nothing) only when nothing is left to give up.
    func ensureSpace(chunks: UInt64, mayGiveUpSnapshots: Bool = true) throws {
        while true {
            // Twice the reserve: one for this operation, one kept for deletes.
            let needed = chunks + 2 * reservePerOperation + space.commitReserve
            if space.reusable >= needed { return }
            if !space.pinned.isEmpty {
                try commit()
                if space.reusable >= needed { return }
            }
            guard mayGiveUpSnapshots, try giveUpOneSnapshot() else { throw StoreError.noSpace }
        }
    }

    /// Before each step of a release: deletes draw on the reserve that ensureSpace keeps.
    func ensureReleaseSpace() throws {
        let needed = reservePerOperation + space.commitReserve
        if space.reusable >= needed { return }
        try commit()
        guard space.reusable >= needed else { throw StoreError.corrupt("no room left even for the metadata of a delete (\(space.reusable) chunks free)") }
    }

    /// Deletes or squashes one snapshot to make room; false when none can be given up.
    func giveUpOneSnapshot() throws -> Bool {
        func better(_ a: SnapshotRecord, _ b: SnapshotRecord) -> Bool {
            a.priority != b.priority ? a.priority < b.priority : a.epoch < b.epoch
        }
        // One pass over the records, keeping the best of each kind.
        var unusedBest: SnapshotRecord?, anyBest: SnapshotRecord?
        try forEachRecord { r in
            guard r.state == .normal && r.priority < 127 else { return true }
            if anyBest.map({ better(r, $0) }) ?? true { anyBest = r }
            if r.usecount == 0 && openCounts[r.tag] == nil && (unusedBest.map({ better(r, $0) }) ?? true) { unusedBest = r }
            return true
        }
        if let victim = unusedBest {
            try deleteSnapshot(tag: victim.tag)
            options.onEvent(.snapshotDeletedForSpace(tag: victim.tag, priority: victim.priority))
            return true
        }
        if let victim = anyBest {
            try squashSnapshot(tag: victim.tag)
            options.onEvent(.snapshotSquashed(tag: victim.tag, priority: victim.priority))
            return true
        }
        return false
    }
}
