import Foundation
import SnapStore
import Testing
@testable import Replication

/// Records compressed against the base (stream feature 8, record kind 5): a chunk that changed
/// in a few bytes travels as a few bytes, the replica decodes it from its own copy of the base,
/// and a stream that needs a base it cannot read is refused.
@Suite struct AgainstBaseTests {
    /// A source at snapshot 1 (random bytes, which compress to nothing on their own) and 2
    /// (64 bytes rewritten in each of 40 chunks), and a replica holding snapshot 1.
    func pair() throws -> (source: Volume, replica: Volume) {
        var rng = Rng(state: 77)
        let source = try Volume(originBytes: 2 << 20)
        let replica = try Volume(originBytes: 2 << 20)
        try source.write((0..<(2 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: 0)
        _ = try source.host.createSnapshot(tag: 1, name: "a", priority: 0)
        try apply(try stream(source, from: nil, to: 1), to: replica)
        for i in 0..<40 {
            try source.write((0..<64).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i * 12 * 4096 + 1000)
        }
        _ = try source.host.createSnapshot(tag: 2, name: "b", priority: 0)
        return (source, replica)
    }

    func kinds(_ bytes: [UInt8]) throws -> [RecordKind] {
        var out: [RecordKind] = []
        var at = try DeltaDecoderProbe.headerLength(bytes)
        while Array(bytes[at..<(at + 4)]) != Array("ZEND".utf8) {
            let (r, _) = try bytes.withUnsafeBytes { try RecordHeader.decode(UnsafeRawBufferPointer(rebasing: $0[at..<(at + 64)])) }
            out.append(r.kind)
            at += 64 + Int(r.storedBytes)
        }
        return out
    }

    @Test func aFewChangedBytesCostAFewBytes() throws {
        let (source, replica) = try pair()
        let against = try stream(source, from: 1, to: 2, compression: .zstd(level: 3))
        let encoder = DeltaEncoder(source: source.host, base: 1, target: 2, compression: .zstd(level: 3))
        encoder.compressesAgainstBase = false
        var alone: [UInt8] = []
        try encoder.encode { alone.append(contentsOf: $0) }
        // 40 chunks of random bytes: alone they do not compress (raw records, 160 KiB); against
        // the base each is its 64 new bytes and a few more.
        #expect(try kinds(alone).allSatisfy { $0 == .raw })
        #expect(try kinds(against) == [RecordKind](repeating: .zstdAgainstBase, count: 40))
        #expect(alone.count > 40 * 4096)
        #expect(against.count < 40 * (64 + 64 + 64) + 1000, "\(against.count) bytes")
        #expect(try DeltaDecoderProbe.decodeHeader(against).features & DeltaFormat.featureZstdAgainstBase != 0)
        // Applied with a reader of its own (as a server's second connection) and without one.
        let applier = DeltaApplier(replica: replica.host)
        applier.referenceReader = replica.host
        var at = 0
        let outcome = try applier.apply { buffer in
            let n = min(buffer.count, against.count - at)
            against.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
            at += n
            return n
        }
        #expect(outcome.snapshot?.tag == 2)
        #expect(try replica.image(2) == source.image(2))
        #expect(try replica.image(1) == source.image(1))
        #expect(try replica.host.check(repair: false).problems.isEmpty)
    }

    @Test func aStreamAgainstTheBaseNeedsTheBaseItself() throws {
        let (source, replica) = try pair()
        let good = try stream(source, from: 1, to: 2, compression: .zstd(level: 3))
        // A decoder with nothing to read the base from refuses the first such record.
        do {
            try good.withUnsafeBytes { try DeltaDecoder().feed($0) { _ in } }
            Issue.record("a record against the base decoded without the base")
        } catch let DeltaError.refused(text) {
            #expect(text.contains("only a replica that holds the base decodes it"))
        }
        // Other bytes than the base's: the frame does not decode, or its data fails the checksum.
        let decoder = DeltaDecoder()
        decoder.reference = { _, into in into.initializeMemory(as: UInt8.self, repeating: 0x55) }
        #expect(throws: DeltaError.self) { try good.withUnsafeBytes { try decoder.feed($0) { _ in } } }
        // The feature bit cleared (header checksum recomputed): such records are malformed.
        var header = try DeltaDecoderProbe.decodeHeader(good)
        let rest = Array(good[header.encodedBytes...])
        header.features &= ~DeltaFormat.featureZstdAgainstBase
        #expect(throws: DeltaError.self) { try apply(header.encoded() + rest, to: replica) }
        // The feature without a base.
        var noBase = header
        noBase.features = DeltaFormat.featureZstd | DeltaFormat.featureZstdAgainstBase
        noBase.base = nil
        noBase.baseChecks = []
        #expect(throws: DeltaError.malformed("records compressed against a base in a stream without a base")) {
            try DeltaDecoderProbe.decodeHeader(noBase.encoded())
        }
        // The replica is still at snapshot 1, and the intact stream applies.
        #expect(try replica.host.snapshots().map(\.tag) == [1])
        try apply(good, to: replica)
        #expect(try replica.image(2) == source.image(2))
    }

    /// The references of the records already in the input are read with one call (a server
    /// round trip for many records); input in small pieces reads them as they come. The
    /// decoded data is the target's either way.
    @Test(arguments: [1 << 20, 97])
    func referencesAreReadAheadTogether(piece: Int) throws {
        let (source, _) = try pair()
        let bytes = try stream(source, from: 1, to: 2, compression: .zstd(level: 3))
        let decoder = DeltaDecoder()
        var calls: [Int] = []
        decoder.reference = { ranges, into in
            calls.append(ranges.count)
            try source.host.read(snapshot: 1, backToBack: ranges, into: into)
        }
        let target = try source.image(2)
        var records = 0
        try bytes.withUnsafeBytes { all in
            var at = 0
            while at < all.count {
                let n = min(piece, all.count - at)
                try decoder.feed(UnsafeRawBufferPointer(rebasing: all[at..<(at + n)])) { event in
                    guard case let .record(r, data?) = event else { return }
                    let from = Int(r.firstChunk) * 4096
                    #expect(Array(data) == Array(target[from..<(from + data.count)]))
                    records += 1
                }
                at += n
            }
        }
        try decoder.finish()
        #expect(records == 40)
        #expect(calls.reduce(0, +) == 40)
        if piece > bytes.count { #expect(calls == [40]) } else { #expect(calls.count > 1) }
    }

    /// A volume grown past the base: chunks beyond the base's end have nothing to be
    /// compressed against, and a record across the end refers to the part the base has.
    @Test func recordsPastTheBasesEndCompressAlone() throws {
        let source = try Volume(originBytes: 100 << 10)
        let replica = try Volume(originBytes: 100 << 10)
        try source.write((0..<(100 << 10)).map { UInt8(truncatingIfNeeded: $0 % 251) }, at: 0)
        _ = try source.host.createSnapshot(tag: 1, name: "", priority: 0)
        try apply(try stream(source, from: nil, to: 1), to: replica)
        _ = try source.host.resizeOrigin(to: 300 << 10)
        try source.write((0..<(120 << 10)).map { UInt8(truncatingIfNeeded: $0 % 13) }, at: 90 << 10)
        _ = try source.host.createSnapshot(tag: 2, name: "", priority: 0)
        let bytes = try stream(source, from: 1, to: 2, compression: .zstd(level: 3))
        try apply(bytes, to: replica)
        #expect(try replica.image(2) == source.image(2))
    }
}
