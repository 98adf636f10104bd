import Foundation
import SnapStore
import Testing
import VolumeServer
@testable import Replication

/// A store and origin on temporary files, served by a `VolumeHost`; removed at the end.
final class Volume {
    let directory: String
    let host: VolumeHost

    init(originBytes: Int, storeBytes: Int = 32 << 20, chunkSize: Int = 4096, uuid: [UInt8]? = nil) throws {
        directory = NSTemporaryDirectory() + "zuma-delta-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let store = directory + "/store", origin = directory + "/origin"
        FileManager.default.createFile(atPath: store, contents: nil)
        FileManager.default.createFile(atPath: origin, contents: nil)
        truncate(store, off_t(storeBytes))
        truncate(origin, off_t(originBytes))
        do {
            // Scoped: the devices (and their locks) go with the store before the host opens them.
            let s = try Store.initialize(store: try FileDevice(path: store), origin: try FileDevice(path: origin),
                                         chunkSizeBytes: chunkSize, volumeUUID: uuid, originPath: origin)
            try s.close()
        }
        host = try VolumeHost(storePath: store)
    }

    deinit {
        try? host.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try host.write(snapshot: nil, offset: UInt64(offset), $0) }
    }

    func image(_ snapshot: UInt64?) throws -> [UInt8] {
        var out: [UInt8] = []
        try host.read(snapshot: snapshot, offset: 0, length: nil) { out.append(contentsOf: $0) }
        return out
    }
}

/// A small deterministic generator (tests print nothing random they cannot replay).
struct Rng {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 11
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// The stream from `base` to `target`; `batchChunks` changed chunks listed per request.
func stream(_ source: Volume, from base: UInt64?, to target: UInt64, compression: Compression = .none,
            batchChunks: UInt64? = nil) throws -> [UInt8] {
    var out: [UInt8] = []
    let encoder = DeltaEncoder(source: source.host, base: base, target: target, compression: compression)
    if let batchChunks { encoder.batchChunks = batchChunks }
    try encoder.encode { out.append(contentsOf: $0) }
    return out
}

/// Applies `bytes` to `replica`, handing them over in pieces of the sizes `pieces` yields.
@discardableResult
func apply(_ bytes: [UInt8], to replica: Volume, pieces: (Int) -> Int = { _ in 1 << 20 }) throws -> ApplyOutcome {
    var at = 0
    return try DeltaApplier(replica: replica.host).apply { buffer in
        let n = min(buffer.count, bytes.count - at, max(1, pieces(at)))
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
        at += n
        return n
    }
}

@Suite struct DeltaStreamTests {
    /// Random writes (random, zero and compressible data), growth, snapshots; every stream,
    /// full then incremental, compressed or not, its changed chunks listed in one batch or in
    /// many, fed in random pieces, makes the replica's snapshot equal the source's byte for byte.
    @Test(arguments: [1, 2, 3])
    func randomModelRoundTrips(seed: UInt64) throws {
        var rng = Rng(state: seed)
        let source = try Volume(originBytes: 1 << 20)
        let replica = try Volume(originBytes: 64 << 10)
        var size = 1 << 20
        var previous: UInt64?
        for tag in UInt64(1)...6 {
            for _ in 0..<(5 + rng.below(20)) {
                let length = [512, 4096, 6000, 65536][rng.below(4)]
                let offset = rng.below(size - length)
                let kind = rng.below(3)
                let bytes = (0..<length).map { i in kind == 0 ? UInt8(truncatingIfNeeded: rng.next()) : kind == 1 ? 0 : UInt8(i % 7) }
                try source.write(bytes, at: offset)
            }
            if tag == 4 {
                size += 256 << 10
                _ = try source.host.resizeOrigin(to: UInt64(size))
            }
            _ = try source.host.createSnapshot(tag: tag, name: "snap \(tag)", priority: 0)
            let compression: Compression = [.none, .lzma(level: 1), .zstd(level: 3)][rng.below(3)]
            let bytes = try stream(source, from: previous, to: tag, compression: compression,
                                   batchChunks: rng.below(2) == 0 ? nil : UInt64(1 + rng.below(16)))
            let outcome = try apply(bytes, to: replica) { _ in 1 + rng.below(70_000) }
            #expect(outcome.snapshot?.tag == tag)
            #expect(try replica.image(tag) == source.image(tag), "seed \(seed) tag \(tag)")
            let info = try #require(try replica.host.snapshot(tag: tag))
            let original = try #require(try source.host.snapshot(tag: tag))
            #expect(info.createdNanoseconds == original.createdNanoseconds && info.name == "snap \(tag)")
            previous = tag
        }
        #expect(try replica.host.check(repair: false).problems.isEmpty)
        #expect(try replica.host.status().volumeUUID == source.host.status().volumeUUID)
    }

    /// The encoder's events handed straight to an applier in the same process, the data read
    /// into the applier's batches (as `zumastor replicate` does): every snapshot arrives
    /// byte for byte, through runs that mix zeros and data and batches that fill up.
    @Test(arguments: [4, 5])
    func eventsReadIntoTheApplierRoundTrip(seed: UInt64) throws {
        var rng = Rng(state: seed)
        let source = try Volume(originBytes: 24 << 20, storeBytes: 96 << 20)
        let replica = try Volume(originBytes: 24 << 20, storeBytes: 96 << 20)
        var previous: UInt64?
        for tag in UInt64(1)...4 {
            for _ in 0..<(3 + rng.below(6)) {
                // Stretches of data with zero chunks inside, up to 3 MiB: runs of 1 MiB that
                // mix both, and batches (1, 2, 4, 8 MiB) that fill up part way through a run.
                let length = 4096 * (1 + rng.below(768))
                let offset = 4096 * rng.below((24 << 20) / 4096 - length / 4096)
                var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                for _ in 0..<rng.below(8) {
                    let z = 4096 * rng.below(length / 4096)
                    for i in z..<min(length, z + 4096 * (1 + rng.below(4))) { bytes[i] = 0 }
                }
                try source.write(bytes, at: offset)
            }
            _ = try source.host.createSnapshot(tag: tag, name: "snap \(tag)", priority: 0)
            let encoder = DeltaEncoder(source: source.host, base: previous, target: tag)
            let applier = DeltaApplier(replica: replica.host)
            var offered = 0
            encoder.destination = { n in
                let room = applier.dataBuffer(count: n)
                if room != nil { offered += 1 }
                return room
            }
            let header = try encoder.makeHeader()
            let outcome = try applier.apply { handle in try encoder.encode(header: header, events: handle) }
            #expect(offered > 0)
            #expect(outcome.snapshot?.tag == tag)
            #expect(try replica.image(tag) == source.image(tag), "seed \(seed) tag \(tag)")
            previous = tag
        }
        #expect(try replica.host.check(repair: false).problems.isEmpty)
    }

    @Test func aStreamFromASnapshotToItselfIsEmpty() throws {
        let source = try Volume(originBytes: 1 << 20)
        try source.write([UInt8](repeating: 7, count: 8192), at: 4096)
        _ = try source.host.createSnapshot(tag: 1, name: "", priority: 0)
        let trailer = try DeltaEncoder(source: source.host, base: 1, target: 1).encode { _ in }
        #expect(trailer.recordCount == 0 && trailer.dataChunks == 0 && trailer.zeroChunks == 0)
    }

    @Test(arguments: ["lzma", "zstd"])
    func theDecoderTakesAnyFragmentation(method: String) throws {
        let source = try Volume(originBytes: 256 << 10)
        try source.write((0..<50_000).map { UInt8(truncatingIfNeeded: $0 * 31) }, at: 1000)
        _ = try source.host.createSnapshot(tag: 1, name: "", priority: 0)
        let bytes = try stream(source, from: nil, to: 1, compression: try Compression.parse(method))
        for piece in [1, 3, 63, 64, 65, 4096] {
            let decoder = DeltaDecoder()
            var events = 0
            var at = 0
            try bytes.withUnsafeBytes { all in
                while at < all.count {
                    let n = min(piece, all.count - at)
                    try decoder.feed(UnsafeRawBufferPointer(rebasing: all[at..<(at + n)])) { _ in events += 1 }
                    at += n
                }
            }
            try decoder.finish()
            #expect(events >= 3, "piece \(piece)")
        }
    }

    /// A replica at A and a stream A -> B, damaged in every way the issue names: refused with
    /// nothing changed (or, found part way, the replica stays at A), then the intact stream
    /// still applies.
    @Test(arguments: ["lzma", "zstd"])
    func damagedStreamsLeaveTheReplicaAtItsPreviousSnapshot(method: String) throws {
        let source = try Volume(originBytes: 512 << 10)
        let replica = try Volume(originBytes: 512 << 10)
        try source.write((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }, at: 0)
        _ = try source.host.createSnapshot(tag: 1, name: "a", priority: 0)
        try apply(try stream(source, from: nil, to: 1), to: replica)
        for i in 0..<12 { try source.write([UInt8](repeating: UInt8(i + 1), count: 5000), at: 30_000 * i + 17) }
        _ = try source.host.createSnapshot(tag: 2, name: "b", priority: 0)
        let good = try stream(source, from: 1, to: 2, compression: try Compression.parse(method))
        let before = try replica.host.snapshots()
        let imageA = try replica.image(1)

        func expectUnchanged(_ what: String) throws {
            #expect(try replica.host.snapshots() == before, "\(what): snapshots changed")
            #expect(try replica.image(nil) == imageA, "\(what): the origin is not back at the base")
        }
        // A flipped bit anywhere: header, record headers, payloads, trailer.
        var positions = Array(stride(from: 0, to: good.count, by: max(1, good.count / 60)))
        positions += [0, 9, 12, 40, 56, 152, 300, good.count - 1, good.count - 40, good.count - 100]
        for p in positions {
            var bad = good
            bad[p] ^= 0x10
            #expect(throws: (any Error).self, "flip at \(p) of \(good.count)") { try apply(bad, to: replica) }
            try expectUnchanged("flip at \(p)")
        }
        // Truncated anywhere.
        for cut in [0, 1, 100, 247, 400, good.count / 2, good.count - 113, good.count - 1] {
            #expect(throws: DeltaError.self, "cut at \(cut)") { try apply(Array(good[0..<cut]), to: replica) }
            try expectUnchanged("cut at \(cut)")
        }
        // A forged length in the first record.
        let header = try DeltaDecoderProbe.headerLength(good)
        var forged = good
        forged.withUnsafeMutableBytes { $0.putU32(0xFFFF_FFF0, header + 20) }
        #expect(throws: DeltaError.self) { try apply(forged, to: replica) }
        try expectUnchanged("forged length")
        // An unknown version (header checksum recomputed: refused for the version itself).
        var future = try DeltaDecoderProbe.decodeHeader(good)
        var futureBytes = future.encoded()
        futureBytes.withUnsafeMutableBytes { $0.putU16(2, 8) }
        #expect(throws: DeltaError.unsupportedVersion(2)) { try apply(futureBytes + Array(good[header...]), to: replica) }
        // Data after the trailer.
        #expect(throws: DeltaError.self) { try apply(good + [0], to: replica) }
        try expectUnchanged("trailing byte")
        // Another volume: the same stream header with another UUID.
        future.volumeUUID = [UInt8](repeating: 9, count: 16)
        #expect(throws: DeltaError.self) { try apply(future.encoded() + Array(good[header...]), to: replica) }
        try expectUnchanged("another volume")
        // And the intact stream still applies.
        try apply(good, to: replica)
        #expect(try replica.image(2) == source.image(2))
    }

    @Test func aMissingOrDifferentBaseIsRefusedBeforeAnyWrite() throws {
        let uuid = [UInt8](repeating: 0x5A, count: 16)
        let x = try Volume(originBytes: 256 << 10, uuid: uuid)
        let y = try Volume(originBytes: 256 << 10, uuid: uuid)
        let replica = try Volume(originBytes: 256 << 10)
        // x and y both have a snapshot 1 with the same id, time, size and name, but other data.
        try x.write([UInt8](repeating: 1, count: 20_000), at: 0)
        try y.write([UInt8](repeating: 2, count: 20_000), at: 0)
        _ = try x.host.createSnapshot(tag: 1, name: "", priority: 0, createdNanoseconds: 1_000)
        _ = try y.host.createSnapshot(tag: 1, name: "", priority: 0, createdNanoseconds: 1_000)
        try y.write([UInt8](repeating: 3, count: 4096), at: 8192)
        _ = try y.host.createSnapshot(tag: 2, name: "", priority: 0)
        _ = try y.host.createSnapshot(tag: 3, name: "", priority: 0)
        // No base at all.
        try apply(try stream(x, from: nil, to: 1), to: replica)
        let before = try replica.host.snapshots()
        #expect(throws: DeltaError.self) { try apply(try stream(y, from: 2, to: 3), to: replica) }
        // Same identity, different contents: the base checks catch it.
        do {
            try apply(try stream(y, from: 1, to: 2), to: replica)
            Issue.record("a different base was accepted")
        } catch let DeltaError.refused(text) {
            #expect(text.contains("differs from the source's at chunk"))
        }
        #expect(try replica.host.snapshots() == before)
        #expect(try replica.image(nil) == x.image(1))
        // A full stream into a replica of another volume with snapshots.
        let other = try Volume(originBytes: 256 << 10)
        _ = try other.host.createSnapshot(tag: 9, name: "", priority: 0)
        #expect(throws: DeltaError.self) { try apply(try stream(x, from: nil, to: 1), to: other) }
    }

    @Test func aReplicaSmallerThanTheSourceGrowsAFileOriginButAShrinkBackIsExact() throws {
        let source = try Volume(originBytes: 1 << 20)
        let replica = try Volume(originBytes: 4 << 10)
        try source.write([UInt8](repeating: 5, count: 1 << 20), at: 0)
        _ = try source.host.createSnapshot(tag: 1, name: "", priority: 0)
        try apply(try stream(source, from: nil, to: 1), to: replica)
        #expect(try replica.host.status().originSizeBytes == 1 << 20)
        _ = try source.host.resizeOrigin(to: 512 << 10)
        _ = try source.host.createSnapshot(tag: 2, name: "", priority: 0)
        try apply(try stream(source, from: 1, to: 2), to: replica)
        #expect(try replica.image(2) == source.image(2))
        #expect(try replica.image(1) == source.image(1))
    }
}

/// Reads the header of an encoded stream (tests forge streams around it).
enum DeltaDecoderProbe {
    static func decodeHeader(_ bytes: [UInt8]) throws -> DeltaHeader {
        try bytes.withUnsafeBytes { b in
            let total = try DeltaHeader.totalLength(fixed: UnsafeRawBufferPointer(rebasing: b[0..<DeltaFormat.headerFixedBytes]))
            return try DeltaHeader.decode(UnsafeRawBufferPointer(rebasing: b[0..<total]))
        }
    }

    static func headerLength(_ bytes: [UInt8]) throws -> Int { try decodeHeader(bytes).encodedBytes }
}
