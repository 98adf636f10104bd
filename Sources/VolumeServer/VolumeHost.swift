// One open store shared by every user in the process: commands, the control socket, FUSE
// threads and NBD connections. The store core is synchronous and single-writer, so every
// call runs under one lock. Concurrent origin writes are gathered into batches that share
// one commit (group commit): the first writer to find no batch in progress takes every
// queued write, copies out what they all need, commits once and writes them all.
//
// Use counting: a snapshot (or the origin) opened as a block file or an NBD export is "in
// use"; the store-full policy squashes such a snapshot instead of deleting it, and delete
// and revert refuse while their target is in use.

import Foundation
import SnapStore
import VolumeInterface

public final class VolumeHost: VolumeAccess, @unchecked Sendable {
    public let storePath: String
    /// Replaced only under the write lock (`recoverIfPossible`).
    private var store: Store<FileDevice>
    private let onEvent: @Sendable (StoreEvent) -> Void
    /// Exclusive for every store call, shared for those that only read memory or the origin:
    /// origin reads, origin writes needing no copy-out (`Store.writeOriginIfProtected`), and
    /// lookups in the in-memory snapshot table.
    private let lock = ReadWriteLock()

    // Group commit.
    private final class PendingWrite {
        let offset: UInt64
        let data: UnsafeRawBufferPointer
        var failure: Error?
        var done = false
        init(offset: UInt64, data: UnsafeRawBufferPointer) { (self.offset, self.data) = (offset, data) }
    }
    private let batchCondition = NSCondition()
    private var queuedWrites: [PendingWrite] = []
    private var batchInProgress = false
    /// Bytes one batch takes at most (bounds the copy-outs of one commit).
    private let batchBytesMax = 64 << 20

    /// Opens of the origin (block files, NBD connections), guarded by `lock`.
    private var originOpens = 0
    /// Snapshots that may be opened for writing (attached or exported writable).
    private var writableTags: Set<UInt64> = []

    public var location: String { storePath }
    /// A server's figures (nil: a command's host, which nobody scrapes).
    public let metrics: VolumeMetrics?

    /// Opens the store at `storePath` and its origin (`originPath`, or the one the store
    /// records); `metrics` counts its block I/O, copy-outs, commits and store-full events.
    public init(storePath: String, originPath: String? = nil, cacheSizeBytes: Int? = nil, metrics: VolumeMetrics? = nil,
                onEvent: @escaping @Sendable (StoreEvent) -> Void = { _ in }) throws {
        let storeDevice = try FileDevice(path: storePath)
        let sb = try Store.readSuperblock(storeDevice, onEvent: onEvent)
        let originDevice = try FileDevice(path: originPath ?? sb.originPath)
        var options = StoreOptions()
        options.checkOriginIdentity = originPath == nil
        if let cacheSizeBytes { options.cacheSizeBytes = cacheSizeBytes }
        options.onEvent = onEvent
        if let metrics {
            options.onEvent = { event in
                metrics.record(event)
                onEvent(event)
            }
            options.onActivity = { metrics.record($0) }
        }
        self.metrics = metrics
        self.storePath = storePath
        self.onEvent = onEvent
        self.store = try Store(store: storeDevice, origin: originDevice, superblock: sb, options: options)
    }

    /// Runs `body` with the store, under the lock.
    public func withStore<T>(_ body: (Store<FileDevice>) throws -> T) rethrows -> T {
        try lock.withWriteLock {
            recoverIfPossible()
            return try body(store)
        }
    }

    /// A store that a full host filesystem left unusable (a write refused with ENOSPC in the
    /// middle of a change) is opened again from its last commit before the next call, as a
    /// restart would: the volume works again once space is freed, without a restart. While
    /// there is still no space, the reopen fails (or the next write does) and this is tried
    /// again at the next call. Under the write lock.
    private func recoverIfPossible() {
        guard !store.isUsable, store.recoverableByReopen, let error = store.unusableReason else { return }
        do {
            store = try store.reopened()
            onEvent(.reopenedAfterNoSpace(error: error, sequence: store.status.sequence))
        } catch {
            // Still no space, most likely: the old handle stays, refusing changes.
        }
    }

    /// Runs one of the calls that may run side by side (see `lock`).
    private func withStoreShared<T>(_ body: (Store<FileDevice>) throws -> T) rethrows -> T {
        try lock.withReadLock { try body(store) }
    }

    // MARK: VolumeAccess

    public func status() throws -> StoreStatus { withStore { $0.status } }
    public func snapshots() throws -> [SnapshotInfo] { try withStore { try $0.snapshots } }
    /// Records come through the node cache, which only one caller at a time may use.
    public func snapshot(tag: UInt64) throws -> SnapshotInfo? { try withStore { try $0.snapshot(tag: tag) } }

    public func createSnapshot(tag: UInt64, name: String, priority: Int8, createdNanoseconds: UInt64?) throws -> SnapshotInfo {
        try withStore { try $0.createSnapshot(tag: tag, name: name, priority: priority, createdNanoseconds: createdNanoseconds) }
    }

    public func deleteSnapshot(tag: UInt64) throws -> UInt64 {
        try withStore { s in
            if let info = try s.snapshot(tag: tag), info.openCount > 0 {
                throw VolumeError.inUse("snapshot \(tag) is in use (\(info.openCount) open: attached or exported); detach it first")
            }
            let before = s.status.freeChunks
            try s.deleteSnapshot(tag: tag)
            writableTags.remove(tag)
            return s.status.freeChunks - before
        }
    }

    public func adjustUsecount(tag: UInt64, by delta: Int64) throws -> UInt32 {
        try withStore { try $0.adjustUsecount(tag: tag, by: delta) }
    }

    public func setPriority(tag: UInt64, _ priority: Int8) throws {
        try withStore { try $0.setPriority(tag: tag, priority) }
    }

    public func usage(tag: UInt64) throws -> SnapshotUsage { try withStore { try $0.usage(tag: tag) } }

    public func read(snapshot: UInt64?, offset: UInt64, length: UInt64?,
                     to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let total = try readLength(snapshot: snapshot, offset: offset, length: length)
        var buffer = [UInt8](repeating: 0, count: Int(min(UInt64(streamPieceBytes), max(total, 1))))
        var done: UInt64 = 0
        while done < total {
            let n = Int(min(UInt64(buffer.count), total - done))
            try buffer.withUnsafeMutableBytes { b in
                let piece = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                try read(snapshot: snapshot, offset: offset + done, into: piece)
                try sink(UnsafeRawBufferPointer(piece))
            }
            done += UInt64(n)
        }
    }

    public func write(snapshot: UInt64?, offset: UInt64, flush: Bool,
                      from source: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> UInt64 {
        var buffer = [UInt8](repeating: 0, count: streamPieceBytes)
        var position = offset
        while true {
            let filled = try buffer.withUnsafeMutableBytes { try source($0) }
            if filled == 0 { break }
            try buffer.withUnsafeBytes { b in
                let piece = UnsafeRawBufferPointer(rebasing: b[0..<filled])
                try measuredWrite(snapshot, bytes: UInt64(filled)) {
                    if let snapshot {
                        try withStore { try $0.write(snapshot: snapshot, offset: position, piece) }
                    } else {
                        try writeOrigin(offset: position, piece)
                    }
                }
            }
            position += UInt64(filled)
        }
        if flush { try self.flush() }
        return position - offset
    }

    /// Makes a range of the origin or a writable snapshot read as zeros (the block files'
    /// discard and write-zeroes): a hole in a file origin where no snapshot needs the old data.
    public func writeZeros(snapshot: UInt64?, offset: UInt64, length: UInt64) throws {
        guard let snapshot else {
            try measuredWrite(nil, bytes: length) { try withStore { try $0.writeZeros(originOffset: offset, length: length) } }
            return
        }
        try writeZeroBytes(snapshot: snapshot, offset: offset, length: length)
    }

    /// Writes zeros, allocated, over a range of the origin or a writable snapshot (NBD
    /// WRITE_ZEROES with NO_HOLE; snapshots, which have no holes).
    public func writeZeroBytes(snapshot: UInt64?, offset: UInt64, length: UInt64) throws {
        let zeros = [UInt8](repeating: 0, count: Int(min(length, UInt64(streamPieceBytes))))
        var done: UInt64 = 0
        try zeros.withUnsafeBytes { z in
            while done < length {
                let n = Int(min(UInt64(z.count), length - done))
                try write(snapshot: snapshot, offset: offset + done, UnsafeRawBufferPointer(rebasing: z[0..<n]))
                done += UInt64(n)
            }
        }
    }

    public func write(originExtents extents: [(offset: UInt64, data: UnsafeRawBufferPointer)]) throws {
        try measuredWrite(nil, bytes: extents.reduce(0) { $0 + UInt64($1.data.count) }) {
            try withStore { try $0.write(originBatch: extents, writeBehind: true) }
        }
    }

    public func changedChunks(from: StoreSide, to: StoreSide, startingAt start: UInt64, limit: UInt64?,
                              _ body: (UInt64) throws -> Void) throws {
        var left = limit ?? UInt64.max
        guard left > 0 else { return }
        try withStore {
            try $0.changedChunks(from: from, to: to, startingAt: start) { chunk in
                try body(chunk)
                left -= 1
                return left > 0
            }
        }
    }

    public func adoptVolumeUUID(_ uuid: [UInt8]) throws { try withStore { try $0.adoptVolumeUUID(uuid) } }

    public func dataRanges(snapshot: UInt64?, chunks: Range<UInt64>) throws -> [Range<UInt64>] {
        guard chunks.count <= dataRangesChunksMax else {
            throw VolumeError.invalidArgument("at most \(dataRangesChunksMax) chunks per data-range query")
        }
        return try withStore { try $0.dataRanges(snapshot: snapshot, chunks: chunks) }
    }

    public func revert(to tag: UInt64) throws -> Int {
        try withStore { s in
            if originOpens > 0 {
                throw VolumeError.inUse("the origin is in use (\(originOpens) open: attached or exported); unmount and detach it before reverting")
            }
            return try s.revert(to: tag)
        }
    }

    public func resizeOrigin(to bytes: UInt64) throws -> StoreStatus {
        try withStore { s in
            try s.resizeOrigin(to: bytes)
            return s.status
        }
    }

    public func resizeStore(to bytes: UInt64) throws -> StoreStatus {
        try withStore { s in
            try s.resizeStore(to: bytes)
            return s.status
        }
    }

    public func check(repair: Bool) throws -> CheckReport { try withStore { try $0.check(repair: repair) } }

    // MARK: Block I/O (block files and NBD)

    /// Reads the origin (`snapshot == nil`) or a snapshot into `buffer`.
    public func read(snapshot: UInt64?, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        do {
            if snapshot == nil {
                // Origin reads touch no store state: they run side by side.
                try withStoreShared { try $0.read(snapshot: nil, offset: offset, into: buffer) }
            } else {
                try withStore { try $0.read(snapshot: snapshot, offset: offset, into: buffer) }
            }
        } catch {
            metrics?.failed(.read)
            throw error
        }
        metrics?.read(snapshot, bytes: buffer.count)
    }

    /// Writes the origin through the group commit, or a writable snapshot directly.
    public func write(snapshot: UInt64?, offset: UInt64, _ data: UnsafeRawBufferPointer) throws {
        try measuredWrite(snapshot, bytes: UInt64(data.count)) {
            if let snapshot {
                try withStore { s in
                    guard writableTags.contains(snapshot) else {
                        throw VolumeError.invalidArgument("snapshot \(snapshot) is read-only (attach or export it writable)")
                    }
                    try s.write(snapshot: snapshot, offset: offset, data)
                }
            } else {
                try writeOrigin(offset: offset, data)
            }
        }
    }

    /// Durability barrier: every write acknowledged before the call is durable when it returns.
    public func flush() throws {
        do {
            try withStore { try $0.flush() }
        } catch {
            metrics?.failed(.flush)
            throw error
        }
        metrics?.flushed()
    }

    /// Runs a write of `bytes` to the origin (`tag` nil) or a snapshot, counted in `metrics`.
    private func measuredWrite<T>(_ tag: UInt64?, bytes: UInt64, _ body: () throws -> T) rethrows -> T {
        guard let metrics else { return try body() }
        let started = Store<FileDevice>.monotonicNanoseconds()
        do {
            let result = try body()
            metrics.wrote(tag, bytes: bytes, started: started)
            return result
        } catch {
            metrics.failed(.write)
            throw error
        }
    }

    /// How many bytes a read from `offset` covers (`length`, or nil: to the end), checked
    /// against the size of the origin or the snapshot.
    public func readLength(snapshot: UInt64?, offset: UInt64, length: UInt64?) throws -> UInt64 {
        let size = try withStore { s -> UInt64 in
            guard let snapshot else { return s.originSizeBytes }
            guard let info = try s.snapshot(tag: snapshot) else { throw StoreError.snapshotMissing(snapshot) }
            return info.originSizeBytes
        }
        guard offset <= size else { throw StoreError.outOfRange("offset \(offset) is past the end at \(formatCount(size)) bytes") }
        let total = length ?? (size - offset)
        guard total <= size - offset else {
            throw StoreError.outOfRange("\(total) bytes from offset \(offset) run past the end at \(formatCount(size)) bytes")
        }
        return total
    }

    /// Size in bytes of the origin or a snapshot (nil when the snapshot does not exist).
    public func sizeBytes(snapshot: UInt64?) -> UInt64? {
        guard let snapshot else { return withStoreShared { $0.originSizeBytes } }
        // A store that cannot read its records has no snapshot to offer.
        return withStore { s in (try? s.snapshot(tag: snapshot))??.originSizeBytes }
    }

    /// Marks the origin or a snapshot open (in use); fails when the snapshot does not exist.
    public func open(snapshot: UInt64?, writable: Bool) throws {
        try withStore { s in
            guard let snapshot else {
                originOpens += 1
                return
            }
            if writable && !writableTags.contains(snapshot) {
                throw VolumeError.invalidArgument("snapshot \(snapshot) is read-only (attach or export it writable)")
            }
            try s.retain(tag: snapshot)
        }
    }

    /// How many times the origin or a snapshot is open (block files, NBD exports).
    public func openCount(snapshot: UInt64?) -> Int {
        withStore { s in snapshot.map { s.openCount(tag: $0) } ?? originOpens }
    }

    public func close(snapshot: UInt64?) {
        withStore { s in
            if let snapshot { s.releaseOpen(tag: snapshot) } else { originOpens = max(0, originOpens - 1) }
        }
    }

    /// What is still open: "the origin", "snapshot 3", ... (for the shutdown warning).
    public func openDevices() -> [String] {
        withStore { s in
            (originOpens > 0 ? ["the origin"] : []) + s.openSnapshotTags.map { "snapshot \($0)" }
        }
    }

    /// Allows (or stops allowing) writes to a snapshot's block file and export.
    public func setWritable(_ writable: Bool, snapshot: UInt64) {
        withStore { _ in
            if writable { writableTags.insert(snapshot) } else { writableTags.remove(snapshot) }
        }
    }

    public func isWritable(snapshot: UInt64) -> Bool { withStoreShared { _ in writableTags.contains(snapshot) } }

    /// Flushes and gives the store up; the host is unusable afterwards.
    public func close() throws { try withStore { try $0.close() } }

    /// A host dropped without `close` (a `ddsnap` command that is done) closes the store too,
    /// so the last superblock lists no runs and carries no log: later damage to the last
    /// commit's blocks reads as damage, never as an interrupted commit. Closing twice is free.
    deinit { try? store.close() }

    // MARK: Group commit

    private func writeOrigin(offset: UInt64, _ data: UnsafeRawBufferPointer) throws {
        if let failure = try writeOrigin([(offset, data)])[0] { throw failure }
    }

    /// Origin writes of one burst (an NBD connection's pipelined requests): each fails or
    /// succeeds on its own, and all of them join the same group commit. Returns each one's
    /// failure (nil: written).
    public func writeOrigin(burst extents: [(offset: UInt64, data: UnsafeRawBufferPointer)]) -> [Error?] {
        let started = Store<FileDevice>.monotonicNanoseconds()
        let failures: [Error?]
        do { failures = try writeOrigin(extents) } catch { failures = extents.map { _ in error } }
        if let metrics {
            for (e, failure) in zip(extents, failures) {
                if failure == nil { metrics.wrote(nil, bytes: UInt64(e.data.count), started: started) } else { metrics.failed(.write) }
            }
        }
        return failures
    }

    private func writeOrigin(_ extents: [(offset: UInt64, data: UnsafeRawBufferPointer)]) throws -> [Error?] {
        var failures = [Error?](repeating: nil, count: extents.count)
        var mine: [(index: Int, write: PendingWrite)] = []
        for (i, e) in extents.enumerated() {
            do {
                // Rewrites of protected chunks need no commit: they go side by side, without a batch.
                if try withStoreShared({ try $0.writeOriginIfProtected(offset: e.offset, e.data) }) { continue }
            } catch {
                // A bad range fails alone, before it can join (and fail) a batch.
                failures[i] = error
                continue
            }
            mine.append((i, PendingWrite(offset: e.offset, data: e.data)))
        }
        guard !mine.isEmpty else { return failures }
        batchCondition.lock()
        queuedWrites.append(contentsOf: mine.map(\.write))
        while !mine.allSatisfy({ $0.write.done }) {
            if batchInProgress {
                batchCondition.wait()
                continue
            }
            // Lead one batch: as many queued writes as fit, ours among them or not.
            batchInProgress = true
            var bytes = 0
            var take = 0
            while take < queuedWrites.count, take == 0 || bytes + queuedWrites[take].data.count <= batchBytesMax {
                bytes += queuedWrites[take].data.count
                take += 1
            }
            let batch = Array(queuedWrites.prefix(take))
            queuedWrites.removeFirst(take)
            batchCondition.unlock()
            var failure: Error?
            do {
                try withStore { try $0.write(originBatch: batch.map { ($0.offset, $0.data) }) }
            } catch {
                failure = error
            }
            batchCondition.lock()
            for w in batch {
                w.failure = failure
                w.done = true
            }
            batchInProgress = false
            batchCondition.broadcast()
        }
        batchCondition.unlock()
        for (i, w) in mine { failures[i] = w.failure }
        return failures
    }
}
