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

    func tableIndex(epoch: UInt64) -> Int? {
        var lo = 0, hi = table.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if table[mid].epoch < epoch { lo = mid + 1 } else { hi = mid }
        }
        return lo < table.count && table[lo].epoch == epoch ? lo : nil
    }

    /// The user-visible record for `tag` (normal or squashed), or `.snapshotMissing`.
    func record(tag: UInt64) throws -> SnapshotRecord {
        guard let epoch = epochByTag[tag], let i = tableIndex(epoch: epoch),
              table[i].state == .normal || table[i].state == .squashed else {
            throw StoreError.snapshotMissing(tag)
        }
        return table[i]
    }

    /// The newest normal epoch: a walk back from the end past the few squashed or dying ones.
    func refreshNewestLive() {
        epochNewestLive = 0
        for r in table.reversed() where r.state == .normal {
            epochNewestLive = r.epoch
            break
        }
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
    /// A binary search, then a walk past the few squashed or dying neighbours.
    func liveNeighbours(of epoch: UInt64) -> (previous: UInt64, next: UInt64) {
        var lo = 0, hi = table.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if table[mid].epoch < epoch { lo = mid + 1 } else { hi = mid }
        }
        var previous: UInt64 = 0, next = UInt64.max
        var i = lo - 1
        while i >= 0 {
            if table[i].state == .normal { previous = table[i].epoch; break }
            i -= 1
        }
        i = lo < table.count && table[lo].epoch == epoch ? lo + 1 : lo
        while i < table.count {
            if table[i].state == .normal { next = table[i].epoch; break }
            i += 1
        }
        return (previous, next)
    }


    func info(_ r: SnapshotRecord) -> SnapshotInfo {
        SnapshotInfo(tag: r.tag, epoch: r.epoch, createdNanoseconds: r.createdNanoseconds, originSizeBytes: r.originSizeBytes,
                     priority: r.priority, usecount: r.usecount, openCount: openCounts[r.tag] ?? 0,
                     squashed: r.state == .squashed, name: r.name)
    }

    /// Snapshots users can see, oldest first.
    public var snapshots: [SnapshotInfo] {
        table.filter { $0.state == .normal || $0.state == .squashed }.map(info)
    }

    public func snapshot(tag: UInt64) -> SnapshotInfo? {
        (try? record(tag: tag)).map(info)
    }

    /// Writes `r` into the table and the snapshots tree.
    func store(_ r: SnapshotRecord) throws {
        var words = [UInt64](repeating: 0, count: SnapshotRecord.words)
        r.encode(into: &words, at: 0)
        try snapshotTree.upsert(Key(r.epoch, 0), words)
        if let i = tableIndex(epoch: r.epoch) {
            let wasNormal = table[i].state == .normal
            precondition(wasNormal || r.state != .normal, "a snapshot never becomes normal again")
            table[i] = r
            if wasNormal && r.state != .normal {
                countSize(of: r, by: -1)
                refreshNewestLive()
            }
        } else {
            precondition(table.last.map { $0.epoch < r.epoch } ?? true, "epochs only grow")
            table.append(r)
            epochByTag[r.tag] = r.epoch
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
        guard epochByTag[tag] == nil else { throw StoreError.snapshotExists(tag) }
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
        try snapshotTree.remove(Key(r.epoch, 0))
        let i = tableIndex(epoch: r.epoch)!
        if table[i].state == .normal { countSize(of: table[i], by: -1) }
        table.remove(at: i)
        epochByTag[r.tag] = nil
        openCounts[r.tag] = nil
        refreshNewestLive()
        superblockDirty = true
    }

    /// Finishes deletes and squashes a crash interrupted.
    func resumePendingReleases() throws {
        for r in table where r.state == .deleting || r.state == .squashing {
            try mutate {
                try release(epoch: r.epoch)
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
        guard let index = tableIndex(epoch: s) else { preconditionFailure("release of unknown epoch \(s)") }
        var r = table[index]
        precondition(r.state == .deleting || r.state == .squashing)
        let batchMax = 2048
        // Private chunks first.
        while true {
            var batch: [(Key, UInt64)] = []
            try privateChunks.scan(from: Key(s, 0)) { key, node, i in
                guard key.hi == s, batch.count < batchMax else { return false }
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
            if batch.count < batchMax { break }
            try commit()
        }
        let (previous, next) = liveNeighbours(of: s)
        var cursor = Key(r.cursorEpoch, r.cursorChunk)
        while true {
            var batch: [(epoch: UInt64, chunk: UInt64, at: UInt64)] = []
            try exceptionsByEpoch.scan(from: cursor) { key, node, i in
                guard key.hi < next, batch.count < batchMax else { return false }
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
            if batch.count < batchMax { break }
            try commit()
        }
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
                       privateChunks.root.height + snapshotTree.root.height)
        return Store.reservePerOperation(heights: h)
    }

    /// Makes sure `chunks` data chunks plus the metadata reserve can be allocated without
    /// failing half way. Commits to release pinned chunks, then gives up snapshots as
    /// DESIGN.md says: the unused snapshot of lowest priority (oldest first), else squash the
    /// in-use one of lowest priority; priority 127 is never given up. Throws `.noSpace`
    /// (changing nothing) only when nothing is left to give up.
    func ensureSpace(chunks: UInt64) throws {
        while true {
            // Twice the reserve: one for this operation, one kept for deletes.
            let needed = chunks + 2 * reservePerOperation + space.commitReserve
            if space.reusable >= needed { return }
            if !space.pinned.isEmpty {
                try commit()
                if space.reusable >= needed { return }
            }
            guard try giveUpOneSnapshot() else { throw StoreError.noSpace }
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
        let candidates = table.filter { $0.state == .normal && $0.priority < 127 }
        let unused = candidates.filter { $0.usecount == 0 && openCounts[$0.tag] == nil }
        if let victim = unused.min(by: better) {
            try deleteSnapshot(tag: victim.tag)
            options.onEvent(.snapshotDeletedForSpace(tag: victim.tag, priority: victim.priority))
            return true
        }
        if let victim = candidates.min(by: better) {
            try squashSnapshot(tag: victim.tag)
            options.onEvent(.snapshotSquashed(tag: victim.tag, priority: victim.priority))
            return true
        }
        return false
    }
}
