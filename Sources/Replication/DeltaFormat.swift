// Delta stream format, version 1 (docs/FORMAT.md): a header naming the volume, the base and
// target snapshots and a sample of the base's contents; records of runs of chunks (raw, zero,
// liblzma- or zstd-compressed, or zstd-compressed against the base's same bytes), each with a SHA-256 of its header and data; a trailer with counts and
// a SHA-256 of every byte before it. All integers little-endian.

import Crypto
import SnapStore

public enum DeltaFormat {
    public static let magic = Array("ZUMADELT".utf8)
    public static let version: UInt16 = 1
    /// Header bytes before the base checks.
    static let headerFixedBytes = 248
    static let identityBytes = 96
    static let baseCheckBytes = 40
    /// At most this many base chunks are checked before the first write.
    public static let baseChecksMax = 64
    static let recordMagic = Array("ZREC".utf8)
    public static let recordHeaderBytes = 64
    static let trailerMagic = Array("ZEND".utf8)
    public static let trailerBytes = 112
    /// A record carries at most this many bytes of data (uncompressed).
    public static let recordDataMax = 4 << 20
    /// Runs are cut at this many bytes of data when encoding.
    static let recordDataTarget = 1 << 20

    /// Feature flags: bit 0, records may be liblzma-compressed; bit 1, the stream has a base;
    /// bit 2, records may be zstd-compressed; bit 3, records may be zstd-compressed against
    /// the base snapshot's bytes of the same range (only a reader holding the base decodes them).
    public static let featureLZMA: UInt32 = 1
    public static let featureBase: UInt32 = 2
    public static let featureZstd: UInt32 = 4
    public static let featureZstdAgainstBase: UInt32 = 8
    static let knownFeatures: UInt32 = featureLZMA | featureBase | featureZstd | featureZstdAgainstBase
}

/// What identifies a snapshot across stores: its id, its time, its size and its name (the
/// epoch is the source's, for reference: a replica numbers its own).
public struct SnapshotIdentity: Equatable, Sendable {
    public var tag: UInt64
    public var epoch: UInt64
    public var createdNanoseconds: UInt64
    public var sizeBytes: UInt64
    public var name: String

    public init(tag: UInt64, epoch: UInt64, createdNanoseconds: UInt64, sizeBytes: UInt64, name: String) {
        (self.tag, self.epoch, self.createdNanoseconds, self.sizeBytes, self.name) = (tag, epoch, createdNanoseconds, sizeBytes, name)
    }

    public init(_ info: SnapshotInfo) {
        self.init(tag: info.tag, epoch: info.epoch, createdNanoseconds: info.createdNanoseconds, sizeBytes: info.originSizeBytes, name: info.name)
    }

    /// Whether `info` (a replica's snapshot) is this snapshot: all but the epoch agree.
    public func matches(_ info: SnapshotInfo) -> Bool {
        info.tag == tag && info.createdNanoseconds == createdNanoseconds && info.originSizeBytes == sizeBytes && info.name == name
    }

    func encode(_ b: UnsafeMutableRawBufferPointer, at o: Int) {
        b.putU64(tag, o)
        b.putU64(epoch, o + 8)
        b.putU64(createdNanoseconds, o + 16)
        b.putU64(sizeBytes, o + 24)
        // At most the field's 63 bytes, cut at a character's start, whatever the name: a name
        // read from a store with bytes that are not UTF-8 grows as it is decoded.
        var n = Array(name.utf8)
        if n.count > 63 {
            var cut = 63
            while cut > 0 && n[cut] & 0xC0 == 0x80 { cut -= 1 }
            n.removeSubrange(cut...)
        }
        b.putU8(UInt8(n.count), o + 32)
        for (i, c) in n.enumerated() { b.putU8(c, o + 33 + i) }
    }

    static func decode(_ b: UnsafeRawBufferPointer, at o: Int, what: String) throws -> SnapshotIdentity {
        let length = Int(b.u8(o + 32))
        guard length <= 63, b.isZero((o + 33 + length)..<(o + 96)) else {
            throw DeltaError.malformed("the \(what) snapshot's name has a bad length or padding")
        }
        guard let name = String(validating: UnsafeRawBufferPointer(rebasing: b[(o + 33)..<(o + 33 + length)]), as: UTF8.self) else {
            throw DeltaError.malformed("the \(what) snapshot's name is not UTF-8")
        }
        return SnapshotIdentity(tag: b.u64(o), epoch: b.u64(o + 8), createdNanoseconds: b.u64(o + 16), sizeBytes: b.u64(o + 24), name: name)
    }
}

/// One chunk of the base and the SHA-256 of its contents there.
public struct BaseCheck: Equatable, Sendable {
    public var chunk: UInt64
    public var digest: [UInt8]
}

public struct DeltaHeader: Equatable, Sendable {
    public var features: UInt32
    public var volumeUUID: [UInt8]
    public var chunkSizeBytes: UInt32
    /// The target snapshot's size: the replica's origin takes it.
    public var volumeSizeBytes: UInt64
    /// Chunks the records cover (data and zero).
    public var chunkCount: UInt64
    public var base: SnapshotIdentity?
    public var target: SnapshotIdentity
    public var baseChecks: [BaseCheck]

    public var encodedBytes: Int { DeltaFormat.headerFixedBytes + DeltaFormat.baseCheckBytes * baseChecks.count + 32 }
    public var chunkCountOfVolume: UInt64 { (volumeSizeBytes + UInt64(chunkSizeBytes) - 1) / UInt64(chunkSizeBytes) }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: encodedBytes)
        bytes.withUnsafeMutableBytes { b in
            for (i, m) in DeltaFormat.magic.enumerated() { b.putU8(m, i) }
            b.putU16(DeltaFormat.version, 8)
            b.putU16(UInt16(encodedBytes), 10)
            b.putU32(features, 12)
            for (i, u) in volumeUUID.enumerated() { b.putU8(u, 16 + i) }
            b.putU32(chunkSizeBytes, 32)
            b.putU32(UInt32(baseChecks.count), 36)
            b.putU64(volumeSizeBytes, 40)
            b.putU64(chunkCount, 48)
            base?.encode(b, at: 56)
            target.encode(b, at: 152)
            for (i, c) in baseChecks.enumerated() {
                let o = DeltaFormat.headerFixedBytes + i * DeltaFormat.baseCheckBytes
                b.putU64(c.chunk, o)
                for (j, d) in c.digest.enumerated() { b.putU8(d, o + 8 + j) }
            }
        }
        let end = encodedBytes - 32
        let digest = Array(SHA256.hash(data: bytes[0..<end]))
        bytes.replaceSubrange(end..<encodedBytes, with: digest)
        return bytes
    }

    /// The header's total length from its first 248 bytes (after checking magic and version).
    static func totalLength(fixed b: UnsafeRawBufferPointer) throws -> Int {
        guard Array(b[0..<8]) == DeltaFormat.magic else { throw DeltaError.notAStream }
        let version = b.u16(8)
        guard version == DeltaFormat.version else { throw DeltaError.unsupportedVersion(version) }
        let checks = Int(b.u32(36))
        guard checks <= DeltaFormat.baseChecksMax else { throw DeltaError.malformed("\(checks) base checks (at most \(DeltaFormat.baseChecksMax))") }
        let total = DeltaFormat.headerFixedBytes + DeltaFormat.baseCheckBytes * checks + 32
        guard Int(b.u16(10)) == total else { throw DeltaError.malformed("header length \(b.u16(10)) does not match its \(checks) base checks") }
        return total
    }

    static func decode(_ b: UnsafeRawBufferPointer) throws -> DeltaHeader {
        let total = try totalLength(fixed: b)
        guard b.count == total else { throw DeltaError.malformed("header of \(b.count) bytes, expected \(total)") }
        let digest = Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: b[0..<(total - 32)])))
        guard digest == Array(b[(total - 32)..<total]) else { throw DeltaError.checksum("the stream header") }
        let features = b.u32(12)
        guard features & ~DeltaFormat.knownFeatures == 0 else { throw DeltaError.unsupportedFeatures(features) }
        let chunkSize = b.u32(32)
        guard chunkSize >= 512, chunkSize.nonzeroBitCount == 1, chunkSize <= 1 << 20 else {
            throw DeltaError.malformed("chunk size \(chunkSize)")
        }
        let hasBase = features & DeltaFormat.featureBase != 0
        guard hasBase || features & DeltaFormat.featureZstdAgainstBase == 0 else {
            throw DeltaError.malformed("records compressed against a base in a stream without a base")
        }
        guard hasBase || b.isZero(56..<152) else { throw DeltaError.malformed("a base identity in a stream without a base") }
        var h = DeltaHeader(features: features, volumeUUID: Array(b[16..<32]), chunkSizeBytes: chunkSize,
                            volumeSizeBytes: b.u64(40), chunkCount: b.u64(48),
                            base: hasBase ? try SnapshotIdentity.decode(b, at: 56, what: "base") : nil,
                            target: try SnapshotIdentity.decode(b, at: 152, what: "target"), baseChecks: [])
        guard h.target.sizeBytes == h.volumeSizeBytes, h.volumeSizeBytes > 0 else {
            throw DeltaError.malformed("volume size \(h.volumeSizeBytes) differs from the target's \(h.target.sizeBytes)")
        }
        guard h.chunkCount <= h.chunkCountOfVolume else { throw DeltaError.malformed("\(h.chunkCount) chunks in a volume of \(h.chunkCountOfVolume)") }
        for i in 0..<Int(b.u32(36)) {
            let o = DeltaFormat.headerFixedBytes + i * DeltaFormat.baseCheckBytes
            h.baseChecks.append(BaseCheck(chunk: b.u64(o), digest: Array(b[(o + 8)..<(o + 40)])))
        }
        guard hasBase || h.baseChecks.isEmpty else { throw DeltaError.malformed("base checks in a stream without a base") }
        return h
    }
}

public enum RecordKind: UInt8, Sendable {
    case raw = 1
    case zero = 2
    case lzma = 3
    case zstd = 4
    /// zstd with the base snapshot's bytes of the record's range (up to the base's end) as
    /// the frame's prefix.
    case zstdAgainstBase = 5
}

public struct RecordHeader: Equatable, Sendable {
    public var kind: RecordKind
    public var firstChunk: UInt64
    public var chunkCount: UInt32
    /// Bytes that follow the header (raw: the data; zero: none; otherwise the compressed data).
    public var storedBytes: UInt32
    /// Bytes of data the record stands for (the last chunk of the volume may be short).
    public var dataBytes: UInt64

    /// The header's first 32 bytes (what the checksum covers with the data).
    func prefix() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeMutableBytes { b in
            for (i, m) in DeltaFormat.recordMagic.enumerated() { b.putU8(m, i) }
            b.putU8(kind.rawValue, 4)
            b.putU64(firstChunk, 8)
            b.putU32(chunkCount, 16)
            b.putU32(storedBytes, 20)
            b.putU64(dataBytes, 24)
        }
        return bytes
    }

    /// SHA-256 of the header's first 32 bytes and the record's data (uncompressed).
    func checksum(data: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: prefix())
        hasher.update(bufferPointer: data)
        return Array(hasher.finalize())
    }

    static func decode(_ b: UnsafeRawBufferPointer) throws -> (RecordHeader, checksum: [UInt8]) {
        guard Array(b[0..<4]) == DeltaFormat.recordMagic else { throw DeltaError.malformed("a record without its magic") }
        guard let kind = RecordKind(rawValue: b.u8(4)) else { throw DeltaError.malformed("record kind \(b.u8(4))") }
        guard b.isZero(5..<8) else { throw DeltaError.malformed("record reserved bytes are not zero") }
        let h = RecordHeader(kind: kind, firstChunk: b.u64(8), chunkCount: b.u32(16), storedBytes: b.u32(20), dataBytes: b.u64(24))
        guard h.chunkCount > 0, h.dataBytes > 0, h.dataBytes <= UInt64(DeltaFormat.recordDataMax) else {
            throw DeltaError.malformed("record of \(h.chunkCount) chunks and \(h.dataBytes) bytes")
        }
        switch kind {
        case .raw: guard UInt64(h.storedBytes) == h.dataBytes else { throw DeltaError.malformed("raw record stores \(h.storedBytes) of \(h.dataBytes) bytes") }
        case .zero: guard h.storedBytes == 0 else { throw DeltaError.malformed("zero record stores \(h.storedBytes) bytes") }
        case .lzma, .zstd, .zstdAgainstBase: guard h.storedBytes > 0, UInt64(h.storedBytes) < h.dataBytes else { throw DeltaError.malformed("compressed record stores \(h.storedBytes) of \(h.dataBytes) bytes") }
        }
        return (h, Array(b[32..<64]))
    }
}

public struct DeltaTrailer: Equatable, Sendable {
    public var recordCount: UInt64 = 0
    /// Chunks sent with their data (raw or compressed), and as zero records.
    public var dataChunks: UInt64 = 0
    public var zeroChunks: UInt64 = 0
    /// Bytes of data the records stand for (uncompressed, zero records included).
    public var dataBytes: UInt64 = 0
    /// Stream bytes before the trailer, and their SHA-256.
    public var streamBytes: UInt64 = 0
    public var streamDigest: [UInt8] = []

    public init() {}

    /// Counts record `r` (all but the stream's bytes and digest).
    mutating func count(_ r: RecordHeader) {
        recordCount += 1
        if r.kind == .zero { zeroChunks += UInt64(r.chunkCount) } else { dataChunks += UInt64(r.chunkCount) }
        dataBytes += r.dataBytes
    }

    func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: DeltaFormat.trailerBytes)
        bytes.withUnsafeMutableBytes { b in
            for (i, m) in DeltaFormat.trailerMagic.enumerated() { b.putU8(m, i) }
            b.putU64(recordCount, 8)
            b.putU64(dataChunks, 16)
            b.putU64(zeroChunks, 24)
            b.putU64(dataBytes, 32)
            b.putU64(streamBytes, 40)
            for (i, d) in streamDigest.enumerated() { b.putU8(d, 48 + i) }
        }
        let digest = Array(SHA256.hash(data: bytes[0..<80]))
        bytes.replaceSubrange(80..<112, with: digest)
        return bytes
    }

    static func decode(_ b: UnsafeRawBufferPointer) throws -> DeltaTrailer {
        guard Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: b[0..<80]))) == Array(b[80..<112]) else {
            throw DeltaError.checksum("the stream trailer")
        }
        guard b.isZero(4..<8) else { throw DeltaError.malformed("trailer reserved bytes are not zero") }
        var t = DeltaTrailer()
        t.recordCount = b.u64(8)
        t.dataChunks = b.u64(16)
        t.zeroChunks = b.u64(24)
        t.dataBytes = b.u64(32)
        t.streamBytes = b.u64(40)
        t.streamDigest = Array(b[48..<80])
        return t
    }
}

public enum DeltaError: Error, Equatable, CustomStringConvertible, Sendable {
    case notAStream
    case unsupportedVersion(UInt16)
    case unsupportedFeatures(UInt32)
    case malformed(String)
    case checksum(String)
    case truncated(String)
    /// The replica cannot take this stream (another volume, a missing or different base, ...).
    case refused(String)
    case compression(String)

    public var description: String {
        switch self {
        case .notAStream: return "not a delta stream (no ZUMADELT magic)"
        case let .unsupportedVersion(v): return "delta stream version \(v) is not supported (this build reads version \(DeltaFormat.version))"
        case let .unsupportedFeatures(f): return "delta stream uses unknown features 0x\(String(f, radix: 16))"
        case let .malformed(text): return "malformed delta stream: \(text)"
        case let .checksum(what): return "checksum mismatch in \(what): the stream is damaged"
        case let .truncated(text): return "truncated delta stream: \(text)"
        case let .refused(text): return text
        case let .compression(text): return "compressed record: \(text)"
        }
    }
}
