import Crypto
import Testing
@testable import Replication

/// The stream format of docs/FORMAT.md, byte for byte: these digests were computed by an
/// independent encoder written from the document's tables (Python's struct and hashlib).
@Suite struct GoldenStreamTests {
    func hex(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    let header = DeltaHeader(
        features: 3, volumeUUID: Array(0..<16), chunkSizeBytes: 4096, volumeSizeBytes: 8192, chunkCount: 2,
        base: SnapshotIdentity(tag: 1, epoch: 2, createdNanoseconds: 3, sizeBytes: 8192, name: "a"),
        target: SnapshotIdentity(tag: 2, epoch: 3, createdNanoseconds: 4, sizeBytes: 8192, name: "b"),
        baseChecks: [BaseCheck(chunk: 5, digest: [UInt8](repeating: 0xAA, count: 32))])
    let data = Array("hello, delta".utf8) + [UInt8](repeating: 0, count: 4096 - 12)

    func records() -> (zero: [UInt8], raw: [UInt8]) {
        let z = RecordHeader(kind: .zero, firstChunk: 0, chunkCount: 1, storedBytes: 0, dataBytes: 4096)
        let r = RecordHeader(kind: .raw, firstChunk: 1, chunkCount: 1, storedBytes: 4096, dataBytes: 4096)
        let zero = z.prefix() + z.checksum(data: UnsafeRawBufferPointer(start: nil, count: 0))
        let raw = data.withUnsafeBytes { r.prefix() + r.checksum(data: $0) }
        return (zero, raw)
    }

    @Test func headerBytes() {
        let bytes = header.encoded()
        #expect(bytes.count == 320)
        #expect(hex(bytes) == "5413400180633146114e25e22ff4b7192f7edb9b03775651b30390588a1095c0")
    }

    @Test func recordBytes() {
        let (zero, raw) = records()
        #expect(hex(zero) == "1c28abdf3f6d54a34a44386ea388fba300c3b2c8921646772890a0dc02ad2e9e")
        #expect(hex(raw) == "963580b4eefad6137cf6305953d540f3d13c9ae8040b948702506349854e096b")
    }

    @Test func trailerAndWholeStream() throws {
        let (zero, raw) = records()
        let body = header.encoded() + zero + raw + data
        var t = DeltaTrailer()
        (t.recordCount, t.dataChunks, t.zeroChunks, t.dataBytes, t.streamBytes) = (2, 1, 1, 8192, UInt64(body.count))
        t.streamDigest = Array(SHA256.hash(data: body))
        #expect(hex(t.encoded()) == "8a2c4cb6c4941f57ab30de781df7cbcc8ee84f955a0b3d503e3afb87795531cb")
        let stream = body + t.encoded()
        #expect(stream.count == 4656)
        #expect(hex(stream) == "75708e5c279be31ae984672ff7d796c7bb16e32112d36cba430157aeac4a34d9")
        // And the decoder reads the golden stream back.
        let decoder = DeltaDecoder()
        var seen: [String] = []
        try stream.withUnsafeBytes { b in
            try decoder.feed(b) { event in
                switch event {
                case let .header(h): seen.append("header \(h.target.name) \(h.baseChecks.count)")
                case let .record(r, d): seen.append("record \(r.firstChunk) \(d.map { String(decoding: $0.prefix(5), as: UTF8.self) } ?? "zero")")
                case let .trailer(t): seen.append("trailer \(t.recordCount)")
                }
            }
        }
        try decoder.finish()
        #expect(seen == ["header b 1", "record 0 zero", "record 1 hello", "trailer 2"])
    }

    /// A kind 5 record whose frame was made by the zstd command, not by this code:
    /// `zstd --no-check --patch-from=REF NEW`, REF being chunk 1 above ("hello, delta" and
    /// zeros) and NEW the same with "DELTA". The decoder reads it against the base's chunk.
    @Test func aRecordAgainstTheBaseFromTheZstdCommand() throws {
        var h = header
        h.features = DeltaFormat.featureBase | DeltaFormat.featureZstd | DeltaFormat.featureZstdAgainstBase
        h.chunkCount = 1
        let frame: [UInt8] = [0x28, 0xb5, 0x2f, 0xfd, 0x60, 0x00, 0x0f, 0x7d, 0x00, 0x00, 0x28, 0x44, 0x45, 0x4c, 0x54,
                              0x41, 0x02, 0x00, 0xf1, 0x07, 0x5e, 0x07, 0xc0, 0x3d, 0x41]
        let expected = Array("hello, DELTA".utf8) + [UInt8](repeating: 0, count: 4096 - 12)
        let r = RecordHeader(kind: .zstdAgainstBase, firstChunk: 1, chunkCount: 1, storedBytes: UInt32(frame.count), dataBytes: 4096)
        let body = h.encoded() + expected.withUnsafeBytes { r.prefix() + r.checksum(data: $0) } + frame
        var t = DeltaTrailer()
        (t.recordCount, t.dataChunks, t.dataBytes, t.streamBytes) = (1, 1, 4096, UInt64(body.count))
        t.streamDigest = Array(SHA256.hash(data: body))
        let decoder = DeltaDecoder()
        var asked: [UInt64] = []
        decoder.reference = { ranges, into in
            asked += ranges.map(\.offset)
            self.data.withUnsafeBytes { into.copyMemory(from: $0) }
        }
        var decoded: [UInt8] = []
        try (body + t.encoded()).withUnsafeBytes { b in
            try decoder.feed(b) { event in
                if case let .record(_, d?) = event { decoded = Array(d) }
            }
        }
        try decoder.finish()
        #expect(asked == [4096])
        #expect(decoded == expected)
    }
}
