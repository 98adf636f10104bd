// The streaming decoder: bytes in, in pieces of any size; header, records and trailer out,
// each checked before it is handed on (header and trailer checksums, each record's SHA-256 of
// its data, record order and ranges, the trailer's counts and its SHA-256 of the whole
// stream). It holds at most one record in memory.

import Crypto
import SnapStore

/// A stream, decoded: what the encoder produces and the applier takes, with or without the
/// bytes of the format in between.
public enum DeltaEvent {
    case header(DeltaHeader)
    /// A record and its data, uncompressed (nil for a zero record). The data is valid only
    /// during the call.
    case record(RecordHeader, UnsafeRawBufferPointer?)
    case trailer(DeltaTrailer)
}

public final class DeltaDecoder {
    public typealias Event = DeltaEvent

    private enum State { case header, records, done }

    private var state = State.header
    private var buffer: [UInt8] = []
    private var header: DeltaHeader?
    private var hasher = SHA256()
    private var totals = DeltaTrailer()
    private var nextChunk: UInt64 = 0
    private var scratch: [UInt8] = []
    private lazy var zstd = ZstdDecompressor()
    /// References read ahead, for the records (by first chunk) that follow in the input.
    private var prefetched: [(firstChunk: UInt64, at: Int, count: Int)] = []
    private var prefetchedNext = 0
    private var prefetchBuffer = BulkBuffer(capacity: 0)
    /// References read with one call at most (ranges, bytes).
    static let prefetchRangesMax = 1024
    static let prefetchBytesMax = 16 << 20

    public init() {}

    /// Reads the base snapshot's bytes of each range, back to back, into the buffer (which
    /// their lengths fill): the references of records compressed against the base. Those of
    /// the records already in the input are read with one call. Without it such a record is
    /// refused.
    public var reference: ((_ ranges: [(offset: UInt64, length: Int)], _ into: UnsafeMutableRawBufferPointer) throws -> Void)?

    /// The header, once decoded.
    public var streamHeader: DeltaHeader? { header }
    /// Bytes consumed so far.
    public private(set) var bytesRead: UInt64 = 0

    /// Takes the next piece of the stream; calls `handle` for everything it completes.
    public func feed(_ bytes: UnsafeRawBufferPointer, _ handle: (Event) throws -> Void) throws {
        guard !bytes.isEmpty else { return }
        if state == .done { throw DeltaError.malformed("data after the trailer") }
        buffer.append(contentsOf: bytes)
        var start = 0
        defer { if start > 0 { buffer.removeSubrange(0..<start) } }
        while true {
            let available = buffer.count - start
            switch state {
            case .done:
                if available > 0 { throw DeltaError.malformed("data after the trailer") }
                return
            case .header:
                guard available >= DeltaFormat.headerFixedBytes else { return }
                let total = try buffer.withUnsafeBytes { try DeltaHeader.totalLength(fixed: UnsafeRawBufferPointer(rebasing: $0[start..<(start + DeltaFormat.headerFixedBytes)])) }
                guard available >= total else { return }
                let h = try buffer.withUnsafeBytes { b -> DeltaHeader in
                    let piece = UnsafeRawBufferPointer(rebasing: b[start..<(start + total)])
                    hasher.update(bufferPointer: piece)
                    return try DeltaHeader.decode(piece)
                }
                header = h
                start += total
                bytesRead += UInt64(total)
                totals.streamBytes += UInt64(total)
                state = .records
                try handle(.header(h))
            case .records:
                guard available >= 4 else { return }
                let isTrailer = buffer[start..<(start + 4)].elementsEqual(DeltaFormat.trailerMagic)
                if isTrailer {
                    guard available >= DeltaFormat.trailerBytes else { return }
                    let t = try buffer.withUnsafeBytes { try DeltaTrailer.decode(UnsafeRawBufferPointer(rebasing: $0[start..<(start + DeltaFormat.trailerBytes)])) }
                    try check(t)
                    start += DeltaFormat.trailerBytes
                    bytesRead += UInt64(DeltaFormat.trailerBytes)
                    state = .done
                    try handle(.trailer(t))
                    continue
                }
                guard available >= DeltaFormat.recordHeaderBytes else { return }
                let (r, checksum) = try buffer.withUnsafeBytes { try RecordHeader.decode(UnsafeRawBufferPointer(rebasing: $0[start..<(start + DeltaFormat.recordHeaderBytes)])) }
                try checkPlace(r)
                let total = DeltaFormat.recordHeaderBytes + Int(r.storedBytes)
                guard available >= total else { return }
                try buffer.withUnsafeBytes { b in
                    let stored = UnsafeRawBufferPointer(rebasing: b[(start + DeltaFormat.recordHeaderBytes)..<(start + total)])
                    try withData(r, stored, ahead: UnsafeRawBufferPointer(rebasing: b[start...])) { data in
                        guard r.checksum(data: data ?? UnsafeRawBufferPointer(start: nil, count: 0)) == checksum else {
                            throw DeltaError.checksum("the record of chunks \(r.firstChunk)..<\(r.firstChunk + UInt64(r.chunkCount))")
                        }
                        hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: b[start..<(start + total)]))
                        totals.count(r)
                        totals.streamBytes += UInt64(total)
                        try handle(.record(r, data))
                    }
                }
                nextChunk = r.firstChunk + UInt64(r.chunkCount)
                start += total
                bytesRead += UInt64(total)
            }
        }
    }

    /// The end of the input: anything short of a complete stream is an error.
    public func finish() throws {
        switch state {
        case .done: return
        case .header: throw DeltaError.truncated(buffer.isEmpty ? "the input is empty" : "it ends inside the header")
        case .records: throw DeltaError.truncated("it ends after \(totals.recordCount) records, before the trailer")
        }
    }

    /// A record must lie in the volume, after the previous one, and stand for exactly the
    /// bytes of its chunks.
    private func checkPlace(_ r: RecordHeader) throws {
        guard let h = header else { return }
        let chunks = h.chunkCountOfVolume
        let end = r.firstChunk &+ UInt64(r.chunkCount)
        guard r.firstChunk >= nextChunk, end > r.firstChunk, end <= chunks else {
            throw DeltaError.malformed("record of chunks \(r.firstChunk)..<\(end) is out of order or outside the volume's \(chunks) chunks")
        }
        let cs = UInt64(h.chunkSizeBytes)
        let expected = min(end * cs, h.volumeSizeBytes) - r.firstChunk * cs
        guard r.dataBytes == expected else { throw DeltaError.malformed("record of chunks \(r.firstChunk)..<\(end) stands for \(r.dataBytes) bytes, not \(expected)") }
        if (r.kind == .lzma && h.features & DeltaFormat.featureLZMA == 0) || (r.kind == .zstd && h.features & DeltaFormat.featureZstd == 0)
            || (r.kind == .zstdAgainstBase && h.features & DeltaFormat.featureZstdAgainstBase == 0) {
            throw DeltaError.malformed("a compressed record in a stream without the compression feature")
        }
        if r.kind == .zstdAgainstBase, referenceBytes(r) == 0 {
            throw DeltaError.malformed("record of chunks \(r.firstChunk)..<\(end) is compressed against the base past the base's end")
        }
    }

    /// The bytes of the base a record compressed against it refers to: its range, cut at the
    /// base's end.
    private func referenceBytes(_ r: RecordHeader) -> Int {
        guard let h = header, let base = h.base else { return 0 }
        // (A record read ahead is not checked yet: its chunk may be anything.)
        let (offset, overflow) = r.firstChunk.multipliedReportingOverflow(by: UInt64(h.chunkSizeBytes))
        return !overflow && offset < base.sizeBytes ? Int(min(r.dataBytes, base.sizeBytes - offset)) : 0
    }

    /// Record `r`'s data, from what it stores; `ahead` is the input from its header on.
    private func withData(_ r: RecordHeader, _ stored: UnsafeRawBufferPointer, ahead: UnsafeRawBufferPointer,
                          _ body: (UnsafeRawBufferPointer?) throws -> Void) throws {
        switch r.kind {
        case .zero: try body(nil)
        case .raw: try body(stored)
        case .lzma, .zstd, .zstdAgainstBase:
            if scratch.count < Int(r.dataBytes) { scratch = [UInt8](repeating: 0, count: Int(r.dataBytes)) }
            try scratch.withUnsafeMutableBytes { s in
                let out = UnsafeMutableRawBufferPointer(rebasing: s[0..<Int(r.dataBytes)])
                switch r.kind {
                case .lzma: try LZMA.decompress(stored, into: out)
                case .zstdAgainstBase: try zstd.decompress(stored, into: out, reference: try reference(of: r, ahead: ahead))
                default: try zstd.decompress(stored, into: out)
                }
                try body(UnsafeRawBufferPointer(out))
            }
        }
    }

    /// The base's bytes that record `r` was compressed against (valid until the next call).
    /// Unless read ahead already, they are read now with those of the complete records that
    /// follow in `ahead` (the input from `r`'s header on), up to the prefetch limits.
    private func reference(of r: RecordHeader, ahead: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer {
        guard let reference, let h = header else {
            throw DeltaError.refused("the record of chunks \(r.firstChunk)..<\(r.firstChunk + UInt64(r.chunkCount)) is compressed against the base snapshot: only a replica that holds the base decodes it")
        }
        if prefetchedNext >= prefetched.count || prefetched[prefetchedNext].firstChunk != r.firstChunk {
            // The records in the input from this one on, as far as they are whole and their
            // headers read; a damaged one found later only ends the list.
            var wanted: [(firstChunk: UInt64, count: Int)] = [(r.firstChunk, referenceBytes(r))]
            var bytes = wanted[0].count
            var at = DeltaFormat.recordHeaderBytes + Int(r.storedBytes)
            var last = r.firstChunk
            while wanted.count < Self.prefetchRangesMax, at + DeltaFormat.recordHeaderBytes <= ahead.count,
                  let decoded = try? RecordHeader.decode(UnsafeRawBufferPointer(rebasing: ahead[at..<(at + DeltaFormat.recordHeaderBytes)])) {
                let next = decoded.0
                guard next.firstChunk > last, at + DeltaFormat.recordHeaderBytes + Int(next.storedBytes) <= ahead.count else { break }
                at += DeltaFormat.recordHeaderBytes + Int(next.storedBytes)
                last = next.firstChunk
                guard next.kind == .zstdAgainstBase else { continue }
                let count = referenceBytes(next)
                guard count > 0, bytes + count <= Self.prefetchBytesMax else { break }
                wanted.append((next.firstChunk, count))
                bytes += count
            }
            if prefetchBuffer.capacity < bytes { prefetchBuffer = BulkBuffer(capacity: bytes) }
            let cs = UInt64(h.chunkSizeBytes)
            try reference(wanted.map { ($0.firstChunk * cs, $0.count) }, UnsafeMutableRawBufferPointer(rebasing: prefetchBuffer.storage[0..<bytes]))
            prefetched.removeAll(keepingCapacity: true)
            var offset = 0
            for w in wanted {
                prefetched.append((w.firstChunk, offset, w.count))
                offset += w.count
            }
            prefetchedNext = 0
        }
        let p = prefetched[prefetchedNext]
        prefetchedNext += 1
        return UnsafeRawBufferPointer(rebasing: prefetchBuffer.storage[p.at..<(p.at + p.count)])
    }

    private func check(_ t: DeltaTrailer) throws {
        let digest = Array(hasher.finalize())
        guard t.streamBytes == totals.streamBytes, t.streamDigest == digest else {
            throw DeltaError.checksum("the stream (its SHA-256 differs from the trailer's)")
        }
        guard t.recordCount == totals.recordCount, t.dataChunks == totals.dataChunks, t.zeroChunks == totals.zeroChunks,
              t.dataBytes == totals.dataBytes else {
            throw DeltaError.malformed("the trailer's counts differ from the records")
        }
        if let h = header, t.dataChunks + t.zeroChunks != h.chunkCount {
            throw DeltaError.malformed("the records cover \(t.dataChunks + t.zeroChunks) chunks, the header announced \(h.chunkCount)")
        }
    }
}
