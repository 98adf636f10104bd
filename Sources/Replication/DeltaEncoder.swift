// The streaming encoder: the chunks that changed between a base and a target snapshot (all
// chunks of the target without a base) -> header, records, trailer. The changed-chunk list is
// fetched in batches and never held whole; each run of consecutive chunks is read once and cut
// into zero records and data records (compressed when that is smaller). With zstd and a base,
// the base's bytes of each run are read too and the records are compressed against them: a
// chunk that changed in a few bytes costs a few bytes.

import Crypto
import SnapStore
import VolumeInterface

public enum Compression: Equatable, Sendable {
    case none
    case lzma(level: UInt32)
    case zstd(level: Int32)

    /// "none", "lzma" (level 1), "lzma:LEVEL" (0-9), "zstd" (level 3) or "zstd:LEVEL" (1-19).
    public static func parse(_ text: String) throws -> Compression {
        if text == "none" { return .none }
        if text == "lzma" { return .lzma(level: 1) }
        if text.hasPrefix("lzma:"), let level = UInt32(text.dropFirst(5)), level <= 9 { return .lzma(level: level) }
        if text == "zstd" { return .zstd(level: 3) }
        if text.hasPrefix("zstd:"), let level = Int32(text.dropFirst(5)), (1...19).contains(level) { return .zstd(level: level) }
        throw DeltaError.refused("compression '\(text)' is not none, lzma, lzma:0 to lzma:9, zstd or zstd:1 to zstd:19")
    }
}

public final class DeltaEncoder {
    let source: VolumeAccess
    let base: UInt64?
    let target: UInt64
    let compression: Compression
    public var progress: Progress?
    /// Chunk numbers fetched per changed-chunk request (tests make it small).
    var batchChunks: UInt64 = 65536
    /// The changed chunks between two snapshots, kept by `makeHeader` when they fit a batch.
    private var changes: (base: UInt64, target: UInt64, chunks: [UInt64])?
    /// The first chunk the stream covers: a transfer resumed where the replica stopped sends
    /// the records from there on (their header counts only those chunks).
    public var startChunk: UInt64 = 0
    /// zstd records of a stream with a base are compressed against the base's same bytes
    /// (stream feature 8). Only a receiver that holds the base decodes them; a peer that does
    /// not read them (replication protocol version 1) turns this off before `makeHeader`.
    public var compressesAgainstBase = true

    public init(source: VolumeAccess, base: UInt64?, target: UInt64, compression: Compression = .none) {
        (self.source, self.base, self.target, self.compression) = (source, base, target, compression)
    }

    /// The stream's header (counting the chunks to send, reading the base checks). A caller
    /// that has the source's status or snapshot records at hand passes them, saving a request
    /// to a server for each.
    public func makeHeader(status known: StoreStatus? = nil, snapshots: [SnapshotInfo] = []) throws -> DeltaHeader {
        let status = try known ?? source.status()
        let targetInfo = try usable(target, among: snapshots)
        let baseInfo = try base.map { try usable($0, among: snapshots) }
        let cs = UInt64(status.chunkSizeBytes)
        let volumeChunks = (targetInfo.originSizeBytes + cs - 1) / cs
        var count: UInt64 = 0
        var checks: [UInt64] = []
        if let baseInfo {
            let baseChunks = (baseInfo.originSizeBytes + cs - 1) / cs
            var listed: [UInt64] = []
            try source.changedChunks(from: .snapshot(baseInfo.tag), to: .snapshot(targetInfo.tag), startingAt: startChunk, limit: nil) { c in
                guard c < volumeChunks else { return }
                count += 1
                if c < baseChunks && checks.count < 16 { checks.append(c) }
                if count <= batchChunks { listed.append(c) }
            }
            // Snapshots never change: a list that fits one batch serves the encoding too.
            changes = count <= batchChunks ? (baseInfo.tag, targetInfo.tag, listed) : nil
        } else {
            count = volumeChunks - min(startChunk, volumeChunks)
        }
        var baseChecks: [BaseCheck] = []
        if let baseInfo, !checks.isEmpty {
            // One read request for all of them; consecutive chunks are read as one range.
            var runs: [(first: UInt64, count: UInt64)] = []
            var builder = RunBuilder(maxChunks: UInt64(checks.count))
            for c in checks { try builder.add(c) { runs.append(($0, $1)) } }
            try builder.finish { runs.append(($0, $1)) }
            let ranges = runs.map { r in (offset: r.first * cs, length: Int(min(cs * r.count, baseInfo.originSizeBytes - r.first * cs))) }
            let buffer = BulkBuffer(capacity: ranges.map(\.length).max()!)
            try source.read(snapshot: baseInfo.tag, ranges: ranges, into: { _ in buffer.storage }) { i in
                for k in 0..<Int(runs[i].count) {
                    let from = k * Int(cs)
                    let chunk = UnsafeRawBufferPointer(rebasing: buffer.storage[from..<min(from + Int(cs), ranges[i].length)])
                    baseChecks.append(BaseCheck(chunk: runs[i].first + UInt64(k), digest: Array(SHA256.hash(data: chunk))))
                }
            }
        }
        var features: UInt32 = baseInfo == nil ? 0 : DeltaFormat.featureBase
        if case .lzma = compression { features |= DeltaFormat.featureLZMA }
        if case .zstd = compression {
            features |= DeltaFormat.featureZstd
            if baseInfo != nil && compressesAgainstBase { features |= DeltaFormat.featureZstdAgainstBase }
        }
        guard let uuid = parseUUID(status.volumeUUID) else { throw DeltaError.refused("the source store's UUID '\(status.volumeUUID)' is not readable") }
        return DeltaHeader(features: features, volumeUUID: uuid, chunkSizeBytes: UInt32(status.chunkSizeBytes),
                           volumeSizeBytes: targetInfo.originSizeBytes, chunkCount: count,
                           base: baseInfo.map(SnapshotIdentity.init), target: SnapshotIdentity(targetInfo), baseChecks: baseChecks)
    }

    private func usable(_ tag: UInt64, among known: [SnapshotInfo]) throws -> SnapshotInfo {
        guard let info = try known.first(where: { $0.tag == tag }) ?? source.snapshot(tag: tag) else { throw StoreError.snapshotMissing(tag) }
        guard !info.squashed else { throw StoreError.snapshotSquashed(tag) }
        return info
    }

    /// Writes the whole stream to `sink`; returns its trailer.
    @discardableResult
    public func encode(to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> DeltaTrailer {
        try encode(header: try makeHeader(), to: sink)
    }

    /// Writes the stream of `header` (from `makeHeader`) to `sink`, in the format's bytes.
    @discardableResult
    public func encode(header: DeltaHeader, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> DeltaTrailer {
        try withoutActuallyEscaping(sink) { sink in
            var writer = StreamWriter(sink: sink, compression: compression)
            let references = header.features & DeltaFormat.featureZstdAgainstBase != 0
            _ = try encode(header: header, references: references) { try writer.take($0, reference: $1) }
            return writer.totals
        }
    }

    /// Hands the stream of `header` to `handle` as events, without the format's bytes (an
    /// applier in the same process takes them as they are). Returns the trailer's counts.
    @discardableResult
    public func encode(header: DeltaHeader, events handle: (DeltaEvent) throws -> Void) throws -> DeltaTrailer {
        try withoutActuallyEscaping(handle) { handle in try encode(header: header, references: false) { e, _ in try handle(e) } }
    }

    /// A record, its data (nil: zeros) and the base's bytes of its range (when asked for and
    /// the base reaches there).
    typealias Emit = (RecordHeader, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void

    /// The stream's events, each record with the base's bytes of its range when `references`.
    private func encode(header: DeltaHeader, references: Bool,
                        handle: @escaping (DeltaEvent, UnsafeRawBufferPointer?) throws -> Void) throws -> DeltaTrailer {
        var totals = DeltaTrailer()
        let emit: Emit = { r, data, reference in
            totals.count(r)
            try handle(.record(r, data), reference)
        }
        let base = references ? header.base : nil
        try handle(.header(header), nil)
        progress?.start(totalChunks: header.chunkCount, totalBytes: header.chunkCount * UInt64(header.chunkSizeBytes))
        var runs = RunBuilder(maxChunks: max(1, UInt64(DeltaFormat.recordDataTarget) / UInt64(header.chunkSizeBytes)))
        let volumeChunks = header.chunkCountOfVolume
        // Runs are read in groups, one request each: a server streams a group's runs back to
        // back, reading ahead while the records of the ones before are handed on.
        var group: [(first: UInt64, count: UInt64)] = []
        var groupBytes: UInt64 = 0
        let readGroup: () throws -> Void = {
            try self.emitRuns(group, header: header, base: base, emit: emit)
            group.removeAll(keepingCapacity: true)
            groupBytes = 0
        }
        let flush: (UInt64, UInt64) throws -> Void = { first, count in
            group.append((first, count))
            groupBytes += count * UInt64(header.chunkSizeBytes)
            if group.count == readRangesCountMax || groupBytes >= Self.groupBytes { try readGroup() }
        }
        if let base = header.base {
            try listChanges(from: base.tag, below: volumeChunks) { try runs.add($0, flush) }
        } else {
            try listData(below: volumeChunks, data: { try runs.add($0, flush) }, zeros: { zeros in
                try runs.finish(flush)
                try readGroup()
                try self.emitZeros(zeros, header: header, emit: emit)
            })
        }
        try runs.finish(flush)
        try readGroup()
        try handle(.trailer(totals), nil)
        progress?.finish()
        return totals
    }

    /// The chunks below `volumeChunks` that changed since snapshot `base`, in increasing order:
    /// the list kept from the header's count when it is this one, else a batch of chunk numbers
    /// at a time, each used after its list call returns (a server holds its store while it lists).
    private func listChanges(from base: UInt64, below volumeChunks: UInt64, _ body: (UInt64) throws -> Void) throws {
        if let known = changes, known.base == base, known.target == target {
            for c in known.chunks where c < volumeChunks { try body(c) }
            return
        }
        var next = startChunk
        var batch: [UInt64] = []
        batch.reserveCapacity(Int(batchChunks))
        while true {
            batch.removeAll(keepingCapacity: true)
            try source.changedChunks(from: .snapshot(base), to: .snapshot(target), startingAt: next, limit: batchChunks) { batch.append($0) }
            guard let last = batch.last else { break }
            for c in batch where c < volumeChunks { try body(c) }
            // A short batch is the last one.
            if batch.count < batchChunks { break }
            next = last + 1
        }
    }

    /// Every chunk of a full stream in order: those the target may hold data in go to `data`;
    /// stretches it cannot (holes of a file origin without copies in the store) go to `zeros`
    /// without being read.
    private func listData(below volumeChunks: UInt64, data: (UInt64) throws -> Void,
                          zeros: (Range<UInt64>) throws -> Void) throws {
        var window = startChunk
        while window < volumeChunks {
            let end = min(window + dataRangesChunksMax, volumeChunks)
            var c = window
            for r in try source.dataRanges(snapshot: target, chunks: window..<end) + [end..<end] {
                if c < r.lowerBound { try zeros(c..<r.lowerBound) }
                for d in r { try data(d) }
                c = max(c, r.upperBound)
            }
            window = end
        }
    }

    private var runBuffer: BulkBuffer?
    private var referenceBuffer: BulkBuffer?
    /// Bytes of runs read with one request (a group ends early at a stretch of zeros).
    static let groupBytes: UInt64 = 32 << 20
    /// Where to read a run of this many bytes instead of the encoder's own buffer (nil: no
    /// room there): an applier in the same process offers its batch (`DeltaApplier.dataBuffer`),
    /// and takes records whose bytes are already in place without copying them.
    public var destination: ((Int) -> UnsafeMutableRawBufferPointer?)?

    /// Reads runs of consecutive chunks of the target, with one request, and emits the zero
    /// and data records of each; with `base`, the base's bytes of the same runs first (one
    /// request too), handed on with each record.
    private func emitRuns(_ runs: [(first: UInt64, count: UInt64)], header: DeltaHeader, base: SnapshotIdentity?,
                          emit: Emit) throws {
        guard !runs.isEmpty else { return }
        let cs = UInt64(header.chunkSizeBytes)
        let ranges = runs.map { r in (offset: r.first * cs, length: Int(min(cs * r.count, header.volumeSizeBytes - r.first * cs))) }
        let references = try base.map { try readReferences(ranges, base: $0) }
        var given = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        try source.read(snapshot: target, ranges: ranges, into: { i in
            given = self.destination?(ranges[i].length) ?? self.ownBuffer(ranges[i].length)
            return given
        }) { i in
            try emitRun(first: runs[i].first, count: runs[i].count, chunkSize: Int(cs),
                        data: UnsafeRawBufferPointer(rebasing: given[0..<ranges[i].length]),
                        reference: references?[i], emit: emit)
        }
    }

    /// The base's bytes of each range, up to the base's end (empty past it), read with one
    /// request into the encoder's reference buffer.
    private func readReferences(_ ranges: [(offset: UInt64, length: Int)], base: SnapshotIdentity) throws -> [UnsafeRawBufferPointer] {
        let lengths = ranges.map { $0.offset < base.sizeBytes ? Int(min(UInt64($0.length), base.sizeBytes - $0.offset)) : 0 }
        let total = lengths.reduce(0, +)
        if (referenceBuffer?.capacity ?? 0) < total { referenceBuffer = BulkBuffer(capacity: max(total, DeltaFormat.recordDataTarget)) }
        let storage = referenceBuffer!.storage
        try source.read(snapshot: base.tag, backToBack: zip(ranges, lengths).map { ($0.offset, $1) }, into: storage)
        var at = 0
        return lengths.map { n in
            defer { at += n }
            return UnsafeRawBufferPointer(rebasing: storage[at..<(at + n)])
        }
    }

    /// The encoder's run buffer, at least `count` bytes.
    private func ownBuffer(_ count: Int) -> UnsafeMutableRawBufferPointer {
        if (runBuffer?.capacity ?? 0) < count { runBuffer = BulkBuffer(capacity: max(count, DeltaFormat.recordDataTarget)) }
        return runBuffer!.storage
    }

    /// Emits the zero and data records of a run of consecutive chunks whose bytes are `all`
    /// (and the base's, up to its end, `reference`).
    private func emitRun(first: UInt64, count: UInt64, chunkSize cs: Int, data all: UnsafeRawBufferPointer,
                         reference: UnsafeRawBufferPointer?, emit: Emit) throws {
        let length = all.count
        let n = Int(count)
        func chunk(_ i: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: all[(i * cs)..<min((i + 1) * cs, length)]) }
        let zero = (0..<n).map { isZero(chunk($0)) }
        var groupStart = 0
        for i in 1...n where i == n || zero[i] != zero[groupStart] {
            let bytes = UnsafeRawBufferPointer(rebasing: all[(groupStart * cs)..<min(i * cs, length)])
            let r = RecordHeader(kind: zero[groupStart] ? .zero : .raw, firstChunk: first + UInt64(groupStart), chunkCount: UInt32(i - groupStart),
                                 storedBytes: zero[groupStart] ? 0 : UInt32(bytes.count), dataBytes: UInt64(bytes.count))
            let from = groupStart * cs
            let base = reference.flatMap { ref in from < ref.count ? UnsafeRawBufferPointer(rebasing: ref[from..<min(i * cs, ref.count)]) : nil }
            try emit(r, zero[groupStart] ? nil : bytes, base)
            groupStart = i
        }
        progress?.advance(chunks: count, bytes: UInt64(length))
    }

    /// Zero records for chunks known to read as zeros, as large as a record may be.
    private func emitZeros(_ chunks: Range<UInt64>, header: DeltaHeader, emit: Emit) throws {
        let cs = UInt64(header.chunkSizeBytes)
        let most = UInt64(DeltaFormat.recordDataMax) / cs
        var first = chunks.lowerBound
        while first < chunks.upperBound {
            let end = min(first + most, chunks.upperBound)
            let bytes = min(end * cs, header.volumeSizeBytes) - first * cs
            try emit(RecordHeader(kind: .zero, firstChunk: first, chunkCount: UInt32(end - first), storedBytes: 0, dataBytes: bytes), nil, nil)
            progress?.advance(chunks: end - first, bytes: bytes)
            first = end
        }
    }
}

/// Consecutive chunks gathered into runs of at most `maxChunks`.
struct RunBuilder {
    let maxChunks: UInt64
    var first: UInt64?
    var count: UInt64 = 0

    mutating func add(_ chunk: UInt64, _ flush: (UInt64, UInt64) throws -> Void) throws {
        if let f = first, chunk == f + count, count < maxChunks {
            count += 1
            return
        }
        try finish(flush)
        first = chunk
        count = 1
    }

    mutating func finish(_ flush: (UInt64, UInt64) throws -> Void) throws {
        if let f = first { try flush(f, count) }
        first = nil
        count = 0
    }
}

/// The format's bytes of a stream's events: records compressed when that makes them smaller
/// (zstd against the base's bytes of the record's range when the encoder gives them) and
/// checksummed; everything before the trailer hashed and counted into the trailer.
struct StreamWriter {
    let sink: (UnsafeRawBufferPointer) throws -> Void
    let compression: Compression
    var hasher = SHA256()
    var totals = DeltaTrailer()
    let zstd = ZstdCompressor()

    init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void, compression: Compression) {
        (self.sink, self.compression) = (sink, compression)
    }

    mutating func take(_ event: DeltaEvent, reference: UnsafeRawBufferPointer? = nil) throws {
        switch event {
        case let .header(h):
            try emit(h.encoded())
        case .record(var r, let data):
            var compressed: [UInt8]?
            if let data {
                switch compression {
                case .none: break
                case let .lzma(level): compressed = LZMA.compress(data, level: level).map { r.kind = .lzma; return $0 }
                case let .zstd(level):
                    if let reference, !reference.isEmpty {
                        compressed = zstd.compress(data, level: level, reference: reference).map { r.kind = .zstdAgainstBase; return $0 }
                    } else {
                        compressed = zstd.compress(data, level: level).map { r.kind = .zstd; return $0 }
                    }
                }
                if let c = compressed { r.storedBytes = UInt32(c.count) }
            }
            try emit(r.prefix() + r.checksum(data: data ?? UnsafeRawBufferPointer(start: nil, count: 0)))
            if let compressed {
                try emit(compressed)
            } else if let data {
                try emit(data)
            }
            totals.count(r)
        case .trailer:
            totals.streamDigest = Array(hasher.finalize())
            try totals.encoded().withUnsafeBytes { try sink($0) }
        }
    }

    private mutating func emit(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try emit($0) } }

    private mutating func emit(_ bytes: UnsafeRawBufferPointer) throws {
        hasher.update(bufferPointer: bytes)
        totals.streamBytes += UInt64(bytes.count)
        try sink(bytes)
    }
}

/// Whether every byte is zero (eight at a time).
func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let n = bytes.count
    while i + 8 <= n {
        if bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
        i += 8
    }
    while i < n {
        if bytes[i] != 0 { return false }
        i += 1
    }
    return true
}
