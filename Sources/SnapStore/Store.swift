// The snapshot store: an origin device whose live data stays in place, and a store device
// holding copied-out chunks and all metadata. This file owns opening, initializing and the
// one commit function; the operations live in Store+*.swift by concern.
//
// The store core is synchronous and single-writer: callers serialize access (the server
// holds a lock around it). Any error thrown in the middle of a change poisons the object:
// the in-memory state may no longer match a commit, so every later call fails until the
// store is reopened, which recovers exactly the last commit.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public struct StoreOptions: Sendable {
    /// Bytes of metadata blocks kept in memory (clean nodes); dirty nodes come on top until
    /// the next commit.
    public var cacheSizeBytes: Int = 32 << 20
    /// Check that the origin is the file or device the store was made for.
    public var checkOriginIdentity: Bool = true
    /// Now, in nanoseconds since 1970; tests pin it for reproducible images.
    public var clock: @Sendable () -> UInt64 = Store<FileDevice>.wallClockNanoseconds
    /// Called for things a sysadmin must hear about: snapshots given up when the store
    /// filled, fill level crossing the warning threshold.
    public var onEvent: @Sendable (StoreEvent) -> Void = { _ in }
    /// Called after each copy-out and each commit, for a server's metrics; nil: nobody counts.
    public var onActivity: (@Sendable (StoreActivity) -> Void)? = nil
    /// Commit automatically once this many metadata blocks are dirty.
    public var dirtyBlocksMax: Int = 4096
    /// Entries a delete or squash frees per batch; a full batch ends in a commit of its own,
    /// so that a large delete is many bounded transactions, resumed after a crash. (Tests make
    /// it small, so that small stores see deletes that span batches.)
    public var releaseBatchEntries: Int = 2048
    /// Chunks a copy-out log may cover before a checkpoint: bounds the replay at open (two
    /// tree inserts per chunk).
    public var copyOutLogChunksMax: UInt64 = 65_536
    /// Debug self-check: after every commit, verify the trees and the space map (the
    /// structural half of `check`) and stop the process at the first commit that breaks them.
    /// Costs a walk of all metadata per commit; on in the test suites, and wherever the
    /// environment sets ZUMA_SELF_CHECK=1.
    public var selfCheck: Bool = StoreOptions.selfCheckFromEnvironment
    public init() {}

    public static var selfCheckFromEnvironment: Bool {
        guard let value = getenv("ZUMA_SELF_CHECK") else { return false }
        return String(cString: value) == "1"
    }
}

public enum StoreEvent: Sendable, Equatable, CustomStringConvertible {
    case snapshotDeletedForSpace(tag: UInt64, priority: Int8)
    case snapshotSquashed(tag: UInt64, priority: Int8)
    case fillWarning(percentUsed: Int, threshold: Int)
    /// Open found the newest commit incomplete (a crash during its single flush, or damage
    /// to a chunk it lists) and opened the one before it.
    case incompleteCommitSkipped(sequence: UInt64, openedSequence: UInt64, reason: String)
    /// A handle that an ENOSPC from the store's device left unusable was opened again at the
    /// last commit (`Store.reopened`); `error` is what had stopped it.
    case reopenedAfterNoSpace(error: String, sequence: UInt64)

    public var description: String {
        switch self {
        case let .incompleteCommitSkipped(sequence, opened, reason):
            return "opened commit \(opened): the newer commit \(sequence) did not complete (\(reason)); writes not flushed before it stopped are lost, as after any crash"
        case let .snapshotDeletedForSpace(tag, prio):
            return "store full: deleted unused snapshot \(tag) (priority \(prio)) to make room"
        case let .snapshotSquashed(tag, prio):
            return "store full: squashed snapshot \(tag) (priority \(prio)); its reads now fail until it is deleted"
        case let .fillWarning(used, threshold):
            return "snapshot store is \(used)% full (warning level \(threshold)%)"
        case let .reopenedAfterNoSpace(error, sequence):
            return "the store works again, reopened at its last commit (\(sequence)) after the host's filesystem refused a write (\(error)); writes refused meanwhile were never acknowledged"
        }
    }
}

/// What the store did, as a server's metrics count it (`StoreOptions.onActivity`).
public enum StoreActivity: Sendable, Equatable {
    /// Origin chunks copied into the store before their first overwrite since a snapshot.
    case copiedOut(chunks: Int)
    /// A commit made durable: a checkpoint or a copy-out log commit, and its duration.
    case committed(checkpoint: Bool, nanoseconds: UInt64)
}

public final class Store<Device: BlockDevice> {
    public let storeDevice: Device
    public let originDevice: Device
    let options: StoreOptions
    var superblock: Superblock
    let pager: Pager<Device>
    let space: SpaceMap
    let exceptionsByChunk: Tree<Device>
    let exceptionsByEpoch: Tree<Device>
    let privateChunks: Tree<Device>
    /// Snapshot records by epoch, and their tags: read through the node cache like every
    /// other tree, so memory does not grow with the snapshot count. Changed only through
    /// `store(_:)` and `removeRecord(_:)`, which keep the derived values below.
    let snapshotTree: Tree<Device>
    let tagTree: Tree<Device>
    /// Records by state (normal, squashed, deleting, squashing).
    var stateCounts = [Int](repeating: 0, count: 4)
    /// The few records used last, by tag (block-file reads ask for a snapshot's size on
    /// every read); emptied by any change to a record.
    var recentRecords: [UInt64: SnapshotRecord] = [:]
    /// The newest epoch of a normal snapshot (0: none): what copy-outs are labelled with.
    var epochNewestLive: UInt64 = 0
    /// Origin chunks any normal snapshot can read: writes at or past this need no copy-out.
    var snapshotChunksMax: UInt64 = 0
    /// Normal snapshots by size in chunks (few distinct sizes): keeps `snapshotChunksMax`
    /// without scanning the table.
    var normalSizeCounts: [UInt64: Int] = [:]
    var protected: ProtectedMap
    /// In-process opens (attached devices, exports); the persistent use count is separate.
    var openCounts: [UInt64: Int] = [:]
    var superblockDirty = false
    /// Data written to the store outside a commit (in-place rewrites of private chunks).
    var storeDataUnsynced = false
    var poisoned: StoreError?
    /// A sync of the store device failed (see `syncStore`).
    private var storeSyncFailed = false
    var fillWarned = false
    /// The snapshot and the end of the last snapshot read (for read-ahead).
    var lastSnapshotRead: (tag: UInt64, end: UInt64)?
    /// Scratch buffer for copy-outs by hand (a run at most; pages touched as runs use them).
    lazy var copyBuffer = BulkBuffer(capacity: Store.copyOutBatchChunks * chunkSizeBytes)
    /// Store chunks written with data in this transaction (copy-outs, new private chunks):
    /// a single-flush commit lists and checksums them.
    var transactionDataRuns: [TransactionDataRun] = []
    /// Scratch buffer for reading data runs back at commit.
    lazy var verifyBuffer = Store.readBackBuffer(chunkSize: chunkSize)
    /// Copy-outs since the last commit, for a copy-out log commit (CopyOutLog.swift), and
    /// the tree mutations they stand for.
    var pendingLog: [CopyOutLogEntry] = []
    var pendingLogMutations = 0
    /// Change counters at the last commit.
    var countersAtCommit = ChangeCounters()
    /// The newest durable superblock carries a copy-out log: memory holds dirty nodes and
    /// bitmap blocks that only the log records, until the next checkpoint.
    var loggedState = false

    public var chunkSizeBytes: Int { Int(superblock.chunkSizeBytes) }
    var chunkSize: UInt64 { UInt64(superblock.chunkSizeBytes) }
    public var originSizeBytes: UInt64 { superblock.originSizeBytes }
    public var volumeUUID: [UInt8] { superblock.volumeUUID }
    public var sequence: UInt64 { superblock.sequence }
    /// Entries of the copy-out log the newest durable superblock carries (0 after a checkpoint).
    public var copyOutLogEntryCount: Int { superblock.copyOutLog.count }

    public static func wallClockNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// A clock for durations: never steps back.
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    // MARK: Initialize

    /// The smallest store (in chunks) that can be initialized for `chunkSize`.
    public static func minimumStoreChunks(chunkSizeBytes: Int) -> UInt64 {
        // Superblocks, one bitmap and index block, the metadata reserve and some data.
        UInt64(Format.superblockSlots.count + 2) + 2 * Store.reservePerOperation(heights: 5) + 32
    }

    /// Formats `store` as an empty snapshot store for `origin`.
    public static func initialize(store: Device, origin: Device, chunkSizeBytes: Int,
                                  volumeUUID: [UInt8]? = nil, originPath: String? = nil,
                                  options: StoreOptions = StoreOptions()) throws -> Store {
        let cs = chunkSizeBytes
        guard cs >= Format.chunkSizeMin, cs <= Format.chunkSizeMax, cs & (cs - 1) == 0 else {
            throw StoreError.invalidArgument("chunk size \(cs) must be a power of two from 4 KiB to 1 MiB")
        }
        let chunks = store.sizeBytes / UInt64(cs)
        let minimum = minimumStoreChunks(chunkSizeBytes: cs)
        guard chunks >= minimum else {
            throw StoreError.invalidArgument("snapshot store \(store.path) is too small: \(formatCount(store.sizeBytes)) bytes; at least \(formatCount(minimum * UInt64(cs))) bytes are needed with \(cs / 1024) KiB chunks")
        }
        let blocks = SpaceMap.blockCount(chunks: chunks, blockSize: cs)
        guard SpaceMap.indexCount(blocks: blocks, blockSize: cs) <= Superblock.indexAddressesMax else {
            throw StoreError.invalidArgument("snapshot store \(store.path) is too large for \(cs / 1024) KiB chunks; use a larger chunk size")
        }
        guard origin.sizeBytes > 0, origin.sizeBytes % 512 == 0 else {
            throw StoreError.invalidArgument("origin \(origin.path) is \(formatCount(origin.sizeBytes)) bytes: it must be a non-empty multiple of 512 bytes")
        }
        let path = originPath ?? origin.path
        guard path.utf8.count <= Format.originPathMax else {
            throw StoreError.invalidArgument("origin path is longer than \(Format.originPathMax) bytes")
        }
        var uuid = volumeUUID ?? []
        if uuid.isEmpty {
            var rng = SystemRandomNumberGenerator()
            uuid = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
            uuid[6] = (uuid[6] & 0x0F) | 0x40
            uuid[8] = (uuid[8] & 0x3F) | 0x80
        }
        precondition(uuid.count == 16)
        // Wipe both superblock slots first, so no older store's root can win at open.
        let zero = [UInt8](repeating: 0, count: Format.superblockBytes)
        for slot in Format.superblockSlots { try store.write(zero, at: slot * UInt64(cs)) }
        try store.sync()
        var sb = Superblock(chunkSizeBytes: UInt32(cs), storeChunkCount: chunks, originSizeBytes: origin.sizeBytes,
                            volumeUUID: uuid, createdNanoseconds: options.clock(),
                            originIdentity: origin.identity, originPath: path)
        sb.featuresIncompat = Format.incompatTagIndex
        let space = SpaceMap(chunkCount: chunks, blockSize: cs)
        let s = Store(store: store, origin: origin, superblock: sb, space: space, options: options)
        s.superblockDirty = true
        try s.commit()
        return s
    }

    private init(store: Device, origin: Device, superblock: Superblock, space: SpaceMap, options: StoreOptions) {
        storeDevice = store
        originDevice = origin
        self.options = options
        self.superblock = superblock
        self.space = space
        pager = Pager(device: store, blockSize: Int(superblock.chunkSizeBytes), space: space,
                      committedSequence: superblock.sequence, cacheBytes: options.cacheSizeBytes)
        exceptionsByChunk = Tree(kind: .exceptionsByChunk, pager: pager, root: superblock.trees[0])
        exceptionsByEpoch = Tree(kind: .exceptionsByEpoch, pager: pager, root: superblock.trees[1])
        privateChunks = Tree(kind: .privateChunks, pager: pager, root: superblock.trees[2])
        snapshotTree = Tree(kind: .snapshots, pager: pager, root: superblock.trees[3])
        tagTree = Tree(kind: .tags, pager: pager, root: superblock.trees[4])
        protected = ProtectedMap()
    }

    // MARK: Open

    /// Opens an existing store on `store` with `origin`, recovering the last commit and
    /// finishing any delete that a crash interrupted.
    public convenience init(store: Device, origin: Device, options: StoreOptions = StoreOptions()) throws {
        try self.init(store: store, origin: origin, superblock: try Store.readSuperblock(store, onEvent: options.onEvent), options: options)
    }

    /// Opens with the superblock `readSuperblock(store)` returned (a caller that needed it
    /// first, to find the origin, does not read and verify it twice).
    public convenience init(store: Device, origin: Device, superblock sb: Superblock, options: StoreOptions = StoreOptions()) throws {
        let cs = UInt64(sb.chunkSizeBytes)
        let (recordedBytes, overflow) = sb.storeChunkCount.multipliedReportingOverflow(by: cs)
        guard !overflow else { throw StoreError.corrupt("superblock: store chunk count \(sb.storeChunkCount) is beyond any device") }
        guard recordedBytes <= store.sizeBytes else {
            throw StoreError.corrupt("store device \(store.path) is \(formatCount(store.sizeBytes)) bytes, smaller than the \(formatCount(recordedBytes)) bytes recorded (truncated?)")
        }
        guard sb.storeChunkCount >= 2 else { throw StoreError.corrupt("superblock: store chunk count \(sb.storeChunkCount)") }
        if options.checkOriginIdentity && sb.originIdentity.kind != .unknown && origin.identity != sb.originIdentity {
            throw StoreError.originMismatch("origin \(origin.path) is not the device this store was made for (\(sb.originPath)); pass the right origin, or --origin to use this one")
        }
        guard origin.sizeBytes >= sb.originSizeBytes else {
            throw StoreError.originMismatch("origin \(origin.path) is \(formatCount(origin.sizeBytes)) bytes, smaller than the \(formatCount(sb.originSizeBytes)) bytes recorded: it shrank behind our back")
        }
        let space = try SpaceMap.load(from: store, sb)
        self.init(store: store, origin: origin, superblock: sb, space: space, options: options)
        try loadSnapshotSummary()
        try replayCopyOutLog()
        if !superblock.hasTagIndex { try buildTagIndex() }
        try resumePendingReleases()
    }

    /// Reads every record once, in epoch order through the node cache, and keeps only
    /// what the store needs at hand: counts by state, normal sizes, the newest live epoch.
    private func loadSnapshotSummary() throws {
        var count: UInt64 = 0
        try forEachRecord { r in
            guard r.epoch >= 1, r.epoch <= superblock.epochLast else {
                throw StoreError.corrupt("snapshot \(r.tag) has epoch \(r.epoch), outside 1...\(superblock.epochLast)")
            }
            count += 1
            stateCounts[Int(r.state.rawValue)] += 1
            if r.state == .normal {
                countSize(of: r, by: 1)
                epochNewestLive = r.epoch
            }
            return true
        }
        guard count == superblock.snapshotCount, count == snapshotTree.count else {
            throw StoreError.corrupt("snapshots tree holds \(count) records, superblock records \(superblock.snapshotCount)")
        }
        if superblock.hasTagIndex && tagTree.count != count {
            throw StoreError.corrupt("tags tree holds \(tagTree.count) tags for \(count) snapshot records")
        }
    }

    /// A store written before the tag index gets one at its first open (one checkpoint).
    private func buildTagIndex() throws {
        guard superblock.originPath.utf8.count <= Format.originPathMax else {
            throw StoreError.corrupt("the origin path of this store is longer than \(Format.originPathMax) bytes, which leaves no room for its tag index; initialize a new store")
        }
        try mutate {
            // Another tree than the one scanned: inserting during the scan is safe.
            try forEachRecord { r in
                guard try tagTree.find(Key(r.tag, 0)) == nil else { throw StoreError.corrupt("snapshot tag \(r.tag) appears twice") }
                try tagTree.upsert(Key(r.tag, 0), r.epoch)
                return true
            }
            superblock.featuresIncompat |= Format.incompatTagIndex
            superblockDirty = true
            try commit()
        }
    }

    // MARK: Commit

    /// Makes every change so far durable, atomically. The one place that orders writes:
    ///   1. give every dirty bitmap/index block a fresh address (copy on write);
    ///   2. write dirty nodes, bitmap blocks and index blocks, all to addresses the last
    ///      commit does not use (data chunks of copy-outs were already written there too);
    ///   3. a small commit (at most `verifiedCommitBytesMax` in at most as many runs as the
    ///      superblock has room for) lists every chunk it wrote with a checksum per run in
    ///      the superblock; a larger one syncs the store here instead, so everything the new
    ///      root points at is durable;
    ///   4. write the superblock, sequence + 1, into the slot the last commit did not use;
    ///   5. sync the store: this is the commit point. A crash before it recovers the previous
    ///      commit: its slot and every block it references are untouched, and a listed
    ///      commit whose runs do not all read back with their checksums is refused at open;
    ///   6. only now may chunks freed in this transaction be reused.
    /// This is a checkpoint: afterwards the superblock carries no copy-out log.
    public func commit() throws {
        try commit(singleFlush: true)
    }

    /// `singleFlush: false` forces the two-flush order (and a superblock write even when
    /// nothing changed), so that the newest durable superblock lists no runs. `mayLog`: when
    /// copy-outs are all that changed, a copy-out log commit (CopyOutLog.swift) may stand in
    /// for the checkpoint; otherwise a pending log is always checkpointed.
    func commit(singleFlush: Bool, mayLog: Bool = false) throws {
        try checkUsable()
        guard changedSinceCommit || !singleFlush || (!mayLog && !superblock.copyOutLog.isEmpty) else { return }
        let started = options.onActivity == nil ? 0 : Store.monotonicNanoseconds()
        do {
            if mayLog && singleFlush, try commitLog() {
                options.onActivity?(.committed(checkpoint: false, nanoseconds: Store.monotonicNanoseconds() - started))
                noteFillLevel()
                return try selfCheckAfterCommit()
            }
            try space.shadowForCommit()                                     // 1
            let sequence = superblock.sequence + 1
            var runs = VerifiedRunList(chunkSize: chunkSize,
                                       capacity: Superblock.runCapacity(indexCount: space.indexAddresses.count),
                                       bytesMax: Store.verifiedCommitBytesMax, enabled: singleFlush)
            if !runs.fits(chunks: UInt64(pager.dirty.count + space.dirtyBlocks.count + space.dirtyIndex.count)) { runs.abandon() }
            try pager.writeDirty(sequence: sequence) { runs.add($0, $1) }   // 2
            var block = [UInt8](repeating: 0, count: chunkSizeBytes)
            for i in space.dirtyBlocks.sorted() {
                block.withUnsafeMutableBytes { space.encodeBlock(i, into: $0, sequence: sequence) }
                try storeDevice.write(block, at: space.blockAddresses[i] * chunkSize)
                block.withUnsafeBytes { runs.add(space.blockAddresses[i], $0) }
            }
            for j in space.dirtyIndex.sorted() {
                block.withUnsafeMutableBytes { space.encodeIndex(j, into: $0, sequence: sequence) }
                try storeDevice.write(block, at: space.indexAddresses[j] * chunkSize)
                block.withUnsafeBytes { runs.add(space.indexAddresses[j], $0) }
            }
            try addDataRuns(to: &runs)                                      // 3
            if runs.abandoned || runs.runs.isEmpty {
                try syncStore()
            }
            var sb = superblock
            sb.sequence = sequence
            sb.trees = [exceptionsByChunk.root, exceptionsByEpoch.root, privateChunks.root, snapshotTree.root, tagTree.root]
            sb.freeChunkCount = space.freeCount
            sb.snapshotCount = snapshotTree.count
            sb.storeChunkCount = space.chunkCount
            sb.bitmapBlockCount = UInt32(space.blockCount)
            sb.indexAddresses = space.indexAddresses
            sb.verifiedRuns = runs.abandoned ? [] : runs.runs
            sb.copyOutLog = []
            try finishCommit(sb, checkpoint: true)                          // 4, 5, 6
        } catch let e as StoreError {
            poisoned = e
            throw e
        }
        options.onActivity?(.committed(checkpoint: true, nanoseconds: Store.monotonicNanoseconds() - started))
        noteFillLevel()
        try selfCheckAfterCommit()
    }

    /// The last steps of every commit, checkpoint or copy-out log: the superblock `sb` written
    /// into the slot the last commit did not use (4), the store synced, which is the commit
    /// point (5); then memory follows. After a checkpoint the chunks freed in the transaction
    /// may be reused (6); after a log commit, what the transaction allocated counts as durable
    /// (a later free pins it) and everything else waits for the next checkpoint.
    func finishCommit(_ sb: Superblock, checkpoint: Bool) throws {
        precondition(sb.sequence == superblock.sequence + 1)
        try storeDevice.write(sb.encode(), at: Format.superblockSlots[Int(sb.sequence % 2)] * chunkSize)
        try syncStore()
        superblock = sb
        pager.committedSequence = sb.sequence
        if checkpoint {
            pager.committed()
            space.committed()
            superblockDirty = false
        } else {
            space.logCommitted()
        }
        storeDataUnsynced = false
        transactionDataRuns.removeAll(keepingCapacity: true)
        markLogged()
    }

    /// Durability barrier: every write acknowledged before it is durable when it returns.
    public func flush() throws {
        try checkUsable()
        try originDevice.sync()
        try commit(singleFlush: true, mayLog: true)
        if storeDataUnsynced {
            try syncStore()
            storeDataUnsynced = false
        }
    }

    /// Flushes and releases the store (the lock goes with the devices). A store closed
    /// cleanly ends with a superblock that lists no runs: damage found later in the last
    /// commit's blocks is then reported as damage, never taken for an interrupted commit.
    public func close() throws {
        guard poisoned == nil else { return }
        try flush()
        if !superblock.verifiedRuns.isEmpty || !superblock.copyOutLog.isEmpty { try commit(singleFlush: false) }
    }

    /// Syncs the store device, remembering a failure: the page cache may then hold blocks the
    /// disk never got, so this handle can no longer be reopened in place (`recoverableByReopen`).
    func syncStore() throws {
        do {
            try storeDevice.sync()
        } catch {
            storeSyncFailed = true
            throw error
        }
    }

    /// Whether an earlier error left this handle unusable (every change refused until reopened).
    public var isUsable: Bool { poisoned == nil }
    /// What left it unusable.
    public var unusableReason: String? { poisoned.map { "\($0)" } }

    /// Whether the error that left this handle unusable is one a reopen of the same devices
    /// undoes: a write the device refused for want of space (ENOSPC, EDQUOT) left the change
    /// half made in memory only, and no store sync has failed (after one, the page cache may
    /// hold blocks the disk never got, which a reopen through it would take for committed).
    public var recoverableByReopen: Bool {
        guard let poisoned, !storeSyncFailed, case let .io(operation, _, code) = poisoned else { return false }
        return (code == ENOSPC || code == EDQUOT) && operation != "fdatasync"
    }

    /// This handle's devices opened again: the store as its last commit left it, as a restart
    /// would find it, with the same options and the same snapshots open. For a handle that
    /// `recoverableByReopen`; this one must not be used afterwards.
    public func reopened() throws -> Store {
        let s = try Store(store: storeDevice, origin: originDevice, options: options)
        s.openCounts = openCounts
        return s
    }

    func checkUsable() throws {
        if let poisoned {
            throw StoreError.corrupt("an earlier error left this store handle unusable (\(poisoned)); reopen the store to recover its last commit")
        }
    }

    /// Runs a change; an error in the middle poisons the handle (see the file comment).
    func mutate<T>(_ body: () throws -> T) throws -> T {
        try checkUsable()
        do {
            let result = try body()
            if pager.dirty.count >= options.dirtyBlocksMax { try commit() }
            return result
        } catch let e as StoreError {
            if poisoned == nil && (pager.dirty.count > 0 || superblockDirty || !space.dirtyBlocks.isEmpty) && !e.isCleanRefusal {
                poisoned = e
            }
            throw e
        }
    }

    var originChunks: UInt64 { (superblock.originSizeBytes + chunkSize - 1) / chunkSize }

    private func noteFillLevel() {
        let used = 100 - Int(space.freeCount * 100 / max(space.chunkCount, 1))
        let threshold = Int(superblock.warnFillPercent)
        if used >= threshold {
            if !fillWarned { options.onEvent(.fillWarning(percentUsed: used, threshold: threshold)) }
            fillWarned = true
        } else {
            fillWarned = false
        }
    }
}

extension StoreError {
    /// Errors thrown before anything was changed (argument checks); they never poison.
    var isCleanRefusal: Bool {
        switch self {
        case .snapshotExists, .snapshotMissing, .snapshotSquashed, .usecountUnderflow, .usecountOverflow,
             .invalidArgument, .outOfRange, .noSpace:
            return true
        default:
            return false
        }
    }
}
