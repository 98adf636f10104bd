// Copy-out log commits. A commit whose only changes are copy-outs (the common case of a
// write after a snapshot) need not write the tree nodes and bitmap blocks it dirtied: it
// writes the copied chunks and a superblock that lists the copy-outs made since the last
// checkpoint, made durable by one flush. The dirty nodes and bitmap stay in memory, and the
// next checkpoint (any other change, a full log, close) writes them as usual. Open applies
// the log on top of the checkpoint's trees and bitmap. docs/FORMAT.md "Copy-out log".
//
// Why it is safe: the checkpoint's blocks are never overwritten while a superblock refers
// to them (the log commit writes no metadata block, and every chunk freed since the
// checkpoint stays pinned until the next checkpoint is durable); every chunk a logged
// copy-out wrote is marked in use again at open before any tree change allocates; and a
// chunk allocated before a log commit is pinned if freed later, since a durable
// superblock now refers to it.

/// What the commit compares to tell whether anything other than logged copy-outs changed.
struct ChangeCounters: Equatable {
    var treeMutations = 0
    var allocations = 0
    var changeFrees = 0
}

extension Store {
    var changeCounters: ChangeCounters {
        ChangeCounters(treeMutations: exceptionsByChunk.mutations + exceptionsByEpoch.mutations
                           + privateChunks.mutations + snapshotTree.mutations + tagTree.mutations,
                       allocations: space.allocations, changeFrees: space.changeFrees)
    }

    /// Records a copy-out for the next log commit (two tree mutations per chunk).
    func noteLogged(_ entry: CopyOutLogEntry) {
        pendingLogMutations += 2 * Int(entry.count)
        CopyOutLogEntry.append(entry, to: &pendingLog)
    }

    /// Has anything changed since the last commit? After a log commit the dirty nodes and
    /// bitmap blocks are still in memory, so the counters tell.
    var changedSinceCommit: Bool {
        if superblockDirty { return true }
        guard loggedState else { return !pager.dirty.isEmpty || !space.dirtyBlocks.isEmpty }
        return !pendingLog.isEmpty || changeCounters != countersAtCommit
    }

    /// Can the changes since the last commit be committed as a log: copy-outs only (every
    /// tree mutation is one the pending log stands for, no other free), and a bounded
    /// number of dirty nodes kept in memory.
    var onlyCopyOutsSinceCommit: Bool {
        let now = changeCounters
        return !superblockDirty && !pendingLog.isEmpty
            && now.treeMutations - countersAtCommit.treeMutations == pendingLogMutations
            && now.changeFrees == countersAtCommit.changeFrees
            && pager.dirty.count < options.dirtyBlocksMax
    }

    /// The durable log followed by the pending entries, adjacent entries joined.
    func logAfterPending() -> [CopyOutLogEntry] {
        var log = superblock.copyOutLog
        for e in pendingLog { CopyOutLogEntry.append(e, to: &log) }
        return log
    }

    /// Commits the pending copy-outs as a log commit if they fit the superblock; returns
    /// false (having written nothing) when a checkpoint must be written instead.
    func commitLog() throws -> Bool {
        guard onlyCopyOutsSinceCommit else { return false }
        let log = logAfterPending()
        let indexCount = superblock.indexAddresses.count
        guard log.count <= Superblock.logCapacity(indexCount: indexCount, runCount: 0),
              log.reduce(0, { $0 + UInt64($1.count) }) <= options.copyOutLogChunksMax else { return false }
        var runs = VerifiedRunList(chunkSize: chunkSize, capacity: Superblock.runCapacity(indexCount: indexCount),
                                   bytesMax: Store.verifiedCommitBytesMax, enabled: true)
        try addDataRuns(to: &runs)
        let listed = runs.abandoned ? [] : runs.runs
        guard log.count <= Superblock.logCapacity(indexCount: indexCount, runCount: listed.count) else { return false }
        if listed.isEmpty { try syncStore() }
        var sb = superblock
        sb.sequence += 1
        sb.verifiedRuns = listed
        sb.copyOutLog = log
        try finishCommit(sb, checkpoint: false)
        return true
    }

    /// The in-memory state now matches the durable log: nothing is pending.
    func markLogged() {
        pendingLog.removeAll(keepingCapacity: true)
        pendingLogMutations = 0
        countersAtCommit = changeCounters
        loggedState = !superblock.copyOutLog.isEmpty
    }

    /// At open: applies the superblock's copy-out log to the checkpoint's trees and bitmap.
    /// Every entry is checked first; all its chunks are marked in use before any tree
    /// change allocates.
    func replayCopyOutLog() throws {
        let log = superblock.copyOutLog
        guard !log.isEmpty else { return markLogged() }
        let newest = epochNewestLive
        for e in log {
            let where_ = "commit \(superblock.sequence): copy-out log entry (chunk \(e.chunk), epoch \(e.epoch), \(e.count) at \(e.address))"
            // (Compared without sums: a forged entry must not overflow them.)
            guard e.count > 0, e.address >= UInt64(Format.superblockSlots.count), e.address <= space.chunkCount,
                  UInt64(e.count) <= space.chunkCount - e.address else {
                throw StoreError.corrupt("\(where_) lies outside the store")
            }
            guard newest != 0, e.epoch == newest else {
                throw StoreError.corrupt("\(where_) is not labelled with the newest snapshot's epoch \(newest)")
            }
            guard UInt64(e.count) <= snapshotChunksMax, e.chunk <= snapshotChunksMax - UInt64(e.count) else {
                throw StoreError.corrupt("\(where_) lies past every snapshot's end")
            }
            for a in e.address..<(e.address + UInt64(e.count)) {
                guard !space.isAllocated(a) else { throw StoreError.corrupt("\(where_): chunk \(a) is already in use") }
                space.markAllocated(a)
            }
        }
        for e in log {
            for i in 0..<UInt64(e.count) {
                let c = e.chunk + i
                guard try exceptionsByChunk.floor(Key(c, .max)).map({ $0.key.hi != c || $0.key.lo < e.epoch }) ?? true else {
                    throw StoreError.corrupt("commit \(superblock.sequence): copy-out log copies chunk \(c) again for epoch \(e.epoch)")
                }
                try exceptionsByChunk.upsert(Key(c, e.epoch), e.address + i)
                try exceptionsByEpoch.upsert(Key(e.epoch, c), e.address + i)
            }
        }
        space.logCommitted()
        markLogged()
    }
}
