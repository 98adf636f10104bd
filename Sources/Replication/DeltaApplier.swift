// Applying a stream to a replica. Before the first write: the stream is for this replica's
// volume (or the replica is empty and takes it), the replica holds the base snapshot (same
// id, time, size and name) and the base's contents match the stream's samples. Then the origin
// is brought back to the base if it drifted (an interrupted apply), sized to the target, the
// records are written (unflushed), and once the trailer checks out and the input has ended,
// everything is flushed and the target snapshot is created with the source's id, time and
// name: one commit. Damage found
// part way stops the apply and puts the origin back to the base; the replica's snapshots never
// change, so it stays at its previous snapshot.

import Crypto
import SnapStore
import VolumeInterface

public struct ApplyOutcome: Sendable {
    public var header: DeltaHeader
    public var trailer: DeltaTrailer
    /// The replica already had the target snapshot: nothing was written.
    public var alreadyApplied = false
    public var snapshot: SnapshotInfo?
}

public final class DeltaApplier {
    let replica: VolumeAccess
    public var progress: Progress?
    /// Bytes read from the input per call.
    static let readBytes = 1 << 20

    public init(replica: VolumeAccess) { self.replica = replica }

    /// The stream resumes a transfer that stopped part way: the origin already holds the
    /// records before its first one, so it is not brought back to the base first.
    public var resuming = false
    /// A failure leaves the origin as the records left it (the next transfer resumes there,
    /// or brings it back to the base), instead of putting it back now. The replica's
    /// snapshots never change either way.
    public var keepsPartial = false
    /// Told, on the writer's thread, each time at least `checkpointBytes` more of the stream
    /// are durable on the replica: every record below the chunk it is given is.
    public var checkpoint: ((DeltaHeader, UInt64) throws -> Void)?
    public var checkpointBytes = 32 << 20
    /// Checks the header before anything else (a caller that announced the stream's target).
    public var expect: ((DeltaHeader) throws -> Void)?
    /// Reads the base snapshot for records compressed against it while the writer thread
    /// writes: a second connection to the replica's server, or a VolumeHost (which locks).
    /// Without it, such a read waits for the writer and goes through `replica`, which
    /// carries one request at a time.
    public var referenceReader: VolumeAccess?
    private var uncheckpointedBytes = 0

    private var header: DeltaHeader?
    private var alreadyApplied = false
    private var changed = false
    private var created: SnapshotInfo?
    private var trailer: DeltaTrailer?

    /// Reads the stream with `read` (it fills the buffer and returns the byte count, 0 at the
    /// end), checks it and applies it.
    public func apply(from read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> ApplyOutcome {
        try apply { handle in
            let decoder = DeltaDecoder()
            decoder.reference = { [unowned self] ranges, into in
                guard let base = self.header?.base else { throw DeltaError.malformed("a record compressed against a base in a stream without one") }
                if self.referenceReader == nil { try self.writer.drain() }
                try (self.referenceReader ?? self.replica).read(snapshot: base.tag, backToBack: ranges, into: into)
            }
            var input = [UInt8](repeating: 0, count: Self.readBytes)
            while true {
                let n = try input.withUnsafeMutableBytes { try read($0) }
                if n == 0 { break }
                try input.withUnsafeBytes { try decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n]), handle) }
            }
            try decoder.finish()
        }
    }

    /// Applies the events `produce` hands to its argument: a decoder's, or an encoder's in the
    /// same process (no bytes in between to check). Once `produce` has returned after a
    /// trailer, the target snapshot is created; if it throws first, the replica is put back.
    package func apply(events produce: ((DeltaEvent) throws -> Void) throws -> Void) throws -> ApplyOutcome {
        do {
            try produce(handle)
            try submitFilling()
            try writer.drain()
            // The whole input is read and checked: only now does the target snapshot appear.
            if let h = header, trailer != nil, !alreadyApplied {
                // Creating the snapshot syncs the origin and commits: the flush comes with it.
                created = try replica.createSnapshot(tag: h.target.tag, name: h.target.name, priority: 0,
                                                     createdNanoseconds: h.target.createdNanoseconds)
            }
        } catch {
            // Nothing may touch the replica while the writer still does.
            writer.settle()
            if changed, created == nil, !keepsPartial, let base = header?.base {
                _ = try? replica.revert(to: base.tag)
            }
            throw error
        }
        progress?.finish()
        guard let header, let trailer else { throw DeltaError.truncated("no trailer") }
        return ApplyOutcome(header: header, trailer: trailer, alreadyApplied: alreadyApplied, snapshot: created)
    }

    private func handle(_ event: DeltaEvent) throws {
        switch event {
        case let .header(h):
            try expect?(h)
            header = h
            if h.chunkCount * UInt64(h.chunkSizeBytes) >= Self.hugePageStreamBytes {
                // Nothing was written into the batches yet: they are only mappings so far.
                (filling, spare) = (ApplyBatch(hugePages: true), ApplyBatch(hugePages: true))
            }
            try prepare(h)
            progress?.start(totalChunks: h.chunkCount, totalBytes: h.chunkCount * UInt64(h.chunkSizeBytes))
        case let .record(r, data):
            guard let h = header, !alreadyApplied else { return }
            let offset = r.firstChunk * UInt64(h.chunkSizeBytes)
            filling.endChunk = max(filling.endChunk, r.firstChunk + UInt64(r.chunkCount))
            if let data {
                try write(data, at: offset)
            } else {
                try zero(chunks: r.firstChunk..<(r.firstChunk + UInt64(r.chunkCount)), offset: offset, end: offset + r.dataBytes)
            }
            progress?.advance(chunks: UInt64(r.chunkCount), bytes: r.dataBytes)
        case let .trailer(t):
            trailer = t
        }
    }

    /// Every check before the first change, then the changes that make the origin the base.
    private func prepare(_ h: DeltaHeader) throws {
        let status = try replica.status()
        guard status.chunkSizeBytes == Int(h.chunkSizeBytes) else {
            throw DeltaError.refused("the replica's chunk size is \(status.chunkSizeBytes) bytes, the stream's \(h.chunkSizeBytes)")
        }
        let streamVolume = formatUUID(h.volumeUUID)
        let adopt = status.volumeUUID != streamVolume
        if adopt {
            guard h.base == nil, status.snapshotCount == 0 else {
                throw DeltaError.refused("the stream is of volume \(streamVolume); the replica is of volume \(status.volumeUUID)")
            }
        }
        if let existing = try replica.snapshot(tag: h.target.tag) {
            guard h.target.matches(existing) else {
                throw DeltaError.refused("the replica already has a different snapshot \(h.target.tag) (created \(existing.createdNanoseconds), not \(h.target.createdNanoseconds))")
            }
            alreadyApplied = true
            return
        }
        if let base = h.base {
            guard let held = try replica.snapshot(tag: base.tag) else {
                throw DeltaError.refused("the replica does not hold the base snapshot \(base.tag); apply the streams before it first")
            }
            guard base.matches(held), !held.squashed else {
                throw DeltaError.refused("the replica's snapshot \(base.tag) is not the stream's base (different time, size, name or squashed)")
            }
            let cs = UInt64(h.chunkSizeBytes)
            for check in h.baseChecks {
                guard check.chunk * cs < base.sizeBytes else { throw DeltaError.malformed("base check of chunk \(check.chunk) past the base's end") }
                var hasher = SHA256()
                try replica.read(snapshot: base.tag, offset: check.chunk * cs, length: min(cs, base.sizeBytes - check.chunk * cs)) { hasher.update(bufferPointer: $0) }
                guard Array(hasher.finalize()) == check.digest else {
                    throw DeltaError.refused("the replica's snapshot \(base.tag) differs from the source's at chunk \(check.chunk): it is not the same base")
                }
            }
            // An interrupted apply left writes in the origin: back to the base first.
            var drifted = status.originSizeBytes != base.sizeBytes
            if !drifted {
                try replica.changedChunks(from: .snapshot(base.tag), to: .origin, startingAt: 0, limit: 1) { _ in drifted = true }
            }
            if drifted && !resuming {
                changed = true
                _ = try replica.revert(to: base.tag)
            }
        }
        if status.originSizeBytes != h.volumeSizeBytes || changed {
            let now = try replica.status()
            if now.originSizeBytes != h.volumeSizeBytes {
                changed = true
                _ = try replica.resizeOrigin(to: h.volumeSizeBytes)
            }
        }
        if adopt {
            changed = true
            try replica.adoptVolumeUUID(h.volumeUUID)
        }
    }

    // Writes are gathered (copied) up to `batchBytes` and given to the replica together, on
    // the writer's thread while the next batch fills: one commit covers the copy-outs of a
    // whole batch, and reading the input overlaps writing and syncing the replica.
    static let batchBytes = 8 << 20
    static let zeroRecordWeight = 16 << 10
    /// The first batch is small, so that the writer starts early; each next one is twice as
    /// large, up to `batchBytes` (fewer commits for long streams).
    static let firstBatchBytes = 1 << 20
    private var batchLimit = DeltaApplier.firstBatchBytes
    private var filling = ApplyBatch(hugePages: false)
    /// The batch in flight (or done with), reused once the writer is done with it.
    private var spare = ApplyBatch(hugePages: false)
    /// Streams of at least this much data gather their batches in transparent huge pages
    /// (fewer faults over hundreds of megabytes). A shorter one does not: the kernel may
    /// compact memory to find a huge page, and a 10 MiB apply measured 47-48 ms with 4 KiB
    /// pages against 53-62 ms with huge ones (alternating trials).
    static let hugePageStreamBytes: UInt64 = 256 << 20
    private let writer = BatchWriter()

    /// Room for `count` bytes of data at the end of the batch being filled (nil: none). A
    /// producer in this process (`DeltaEncoder.destination`) reads records there; a record
    /// whose bytes lie in that room is then taken where it is, without a copy. Valid until
    /// the next event.
    public func dataBuffer(count: Int) -> UnsafeMutableRawBufferPointer? {
        let used = filling.data.count
        guard count <= filling.data.capacity - used else { return nil }
        return UnsafeMutableRawBufferPointer(rebasing: filling.data.storage[used..<(used + count)])
    }

    private func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws {
        changed = true
        let room = filling.data.storage, used = filling.data.count
        if let p = data.baseAddress, let base = room.baseAddress, p >= UnsafeRawPointer(base + used),
           p + data.count <= UnsafeRawPointer(base + room.count) {
            // Read in place (from `dataBuffer`): taken as it is. The bytes skipped before it
            // (zero records of the same run) count towards the batch like data.
            let at = UnsafeRawPointer(base).distance(to: p)
            filling.extents.append((offset, at, data.count))
            filling.data.count = at + data.count
            filling.bytes += at + data.count - used
        } else {
            filling.extents.append((offset, used, data.count))
            filling.data.append(data)
            filling.bytes += data.count
        }
        if filling.bytes >= batchLimit { try submitFilling() }
    }

    /// A zero record: resolved against the replica on the writer's thread (only where its
    /// origin may hold data, and does not read as zeros, are zeros written).
    private func zero(chunks: Range<UInt64>, offset: UInt64, end: UInt64) throws {
        changed = true
        filling.zeroRecords.append((chunks, offset, end))
        // Most zero records need nothing (the replica already reads zeros there): they count
        // as a little, so that a full stream's many zero records do not make many batches.
        filling.bytes += Self.zeroRecordWeight
        if filling.bytes >= batchLimit { try submitFilling() }
    }

    private func submitFilling() throws {
        guard !filling.isEmpty else { return }
        try writer.drain()
        let batch = filling
        (filling, spare) = (spare, batch)
        let job = WriterJob(applier: self, batch: batch)
        try writer.submit { try job.run() }
        batchLimit = min(batchLimit * 2, Self.batchBytes)
    }

    private struct WriterJob: @unchecked Sendable {
        let applier: DeltaApplier
        let batch: ApplyBatch
        func run() throws {
            try applier.writeBatch(batch)
            try applier.written(batch)
            batch.clear()
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: 1 << 20)

    /// On the writer's thread, after a batch: a checkpoint when enough has been written since
    /// the last one (flushed first, so that what it names is durable).
    private func written(_ batch: ApplyBatch) throws {
        guard let checkpoint, let header else { return }
        uncheckpointedBytes += batch.bytes
        guard uncheckpointedBytes >= checkpointBytes else { return }
        try replica.flush()
        try checkpoint(header, batch.endChunk)
        uncheckpointedBytes = 0
    }

    /// On the writer's thread: the batch's zero records, then its data, in one call.
    private func writeBatch(_ batch: ApplyBatch) throws {
        let cs = UInt64(header!.chunkSizeBytes)
        var zeroExtents: [(offset: UInt64, count: Int)] = []
        for z in batch.zeroRecords {
            for range in try replica.dataRanges(snapshot: nil, chunks: z.chunks) {
                let from = max(range.lowerBound * cs, z.offset), to = min(range.upperBound * cs, z.end)
                guard from < to, try !originIsZero(offset: from, length: to - from) else { continue }
                var at = from
                while at < to {
                    let n = Int(min(UInt64(Self.zeros.count), to - at))
                    zeroExtents.append((at, n))
                    at += UInt64(n)
                }
            }
        }
        guard !batch.extents.isEmpty || !zeroExtents.isEmpty else { return }
        let data = batch.data.bytes
        try Self.zeros.withUnsafeBytes { zeros in
            try replica.write(originExtents:
                batch.extents.map { ($0.offset, UnsafeRawBufferPointer(rebasing: data[$0.at..<($0.at + $0.count)])) }
                + zeroExtents.map { ($0.offset, UnsafeRawBufferPointer(rebasing: zeros[0..<$0.count])) })
        }
    }

    /// Whether the replica's origin already reads as zeros there (then a zero record costs a read).
    private func originIsZero(offset: UInt64, length: UInt64) throws -> Bool {
        var zero = true
        try replica.read(snapshot: nil, offset: offset, length: length) { piece in
            if zero && !isZero(piece) { zero = false }
        }
        return zero
    }
}

/// Writes gathered for the replica: data copied in, and zero records to resolve against it.
final class ApplyBatch {
    let data: BulkBuffer
    init(hugePages: Bool) {
        data = BulkBuffer(capacity: DeltaApplier.batchBytes + DeltaFormat.recordDataMax, hugePages: hugePages)
    }
    /// Offset in the origin, offset in `data`, length.
    var extents: [(offset: UInt64, at: Int, count: Int)] = []
    /// The record's chunks and its byte range in the origin.
    var zeroRecords: [(chunks: Range<UInt64>, offset: UInt64, end: UInt64)] = []
    /// Data bytes, plus `zeroRecordWeight` per zero record.
    var bytes = 0
    /// The chunk after the last one its records cover.
    var endChunk: UInt64 = 0

    var isEmpty: Bool { extents.isEmpty && zeroRecords.isEmpty }

    func clear() {
        data.count = 0
        extents.removeAll(keepingCapacity: true)
        zeroRecords.removeAll(keepingCapacity: true)
        bytes = 0
        endChunk = 0
    }
}
