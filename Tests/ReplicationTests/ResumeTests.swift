import Foundation
import SnapStore
import Testing
@testable import Replication

/// A transfer cut part way resumes from the replica's last checkpoint: the rest of the same
/// delta (`DeltaEncoder.startChunk`) applied with `resuming` makes the replica's snapshot equal
/// the source's, whether the cut stream was full or a delta; a fresh (not resumed) stream after
/// a cut first brings the origin back to the base.
@Suite struct ResumeTests {
    struct Cut: Error {}

    /// Applies `bytes` with checkpoints every `every` bytes and cuts the input after `cutAt`
    /// bytes; returns the last checkpoint's chunk.
    func applyCut(_ bytes: [UInt8], to replica: Volume, cutAt: Int, every: Int) throws -> UInt64? {
        let applier = DeltaApplier(replica: replica.host)
        applier.keepsPartial = true
        applier.checkpointBytes = every
        var last: UInt64?
        applier.checkpoint = { _, next in last = next }
        var at = 0
        #expect(throws: Cut.self) {
            try applier.apply { buffer in
                guard at < cutAt else { throw Cut() }
                let n = min(buffer.count, cutAt - at, 64 << 10)
                bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
                at += n
                return n
            }
        }
        return last
    }

    func resumed(_ source: Volume, from base: UInt64?, to target: UInt64, at chunk: UInt64, into replica: Volume) throws -> ApplyOutcome {
        let encoder = DeltaEncoder(source: source.host, base: base, target: target, compression: .lzma(level: 1))
        encoder.startChunk = chunk
        var out: [UInt8] = []
        let header = try encoder.makeHeader()
        try encoder.encode(header: header) { out.append(contentsOf: $0) }
        let applier = DeltaApplier(replica: replica.host)
        applier.resuming = true
        var at = 0
        return try applier.apply { buffer in
            let n = min(buffer.count, out.count - at)
            out.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
            at += n
            return n
        }
    }

    func fill(_ v: Volume, seed: UInt64, writes: Int, size: Int) throws {
        var rng = Rng(state: seed)
        for _ in 0..<writes {
            let n = 4096 * (1 + rng.below(64))
            try v.write((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: 4096 * rng.below(size / 4096 - 64))
        }
    }

    @Test(arguments: [11, 12])
    func aCutFullStreamThenADeltaResumeAndEndIdentical(seed: UInt64) throws {
        let size = 16 << 20
        let source = try Volume(originBytes: size), replica = try Volume(originBytes: size)
        try fill(source, seed: seed, writes: 200, size: size)
        _ = try source.host.createSnapshot(tag: 1, name: "one", priority: 0)
        let full = try stream(source, from: nil, to: 1)
        let chunk = try #require(try applyCut(full, to: replica, cutAt: full.count * 2 / 3, every: 1 << 20))
        #expect(chunk > 0)
        #expect(try replica.host.snapshots().isEmpty)
        let outcome = try resumed(source, from: nil, to: 1, at: chunk, into: replica)
        #expect(outcome.header.chunkCount == UInt64(size / 4096) - chunk)
        #expect(try replica.image(1) == source.image(1))

        // A delta, cut and resumed the same way.
        try fill(source, seed: seed + 100, writes: 150, size: size)
        _ = try source.host.createSnapshot(tag: 2, name: "two", priority: 0)
        let delta = try stream(source, from: 1, to: 2)
        let at = try #require(try applyCut(delta, to: replica, cutAt: delta.count / 2, every: 256 << 10))
        _ = try resumed(source, from: 1, to: 2, at: at, into: replica)
        #expect(try replica.image(2) == source.image(2))
        #expect(try replica.image(1) == source.image(1))
    }

    @Test func aFreshStreamAfterACutPutsTheOriginBackToTheBaseFirst() throws {
        let size = 8 << 20
        let source = try Volume(originBytes: size), replica = try Volume(originBytes: size)
        try fill(source, seed: 7, writes: 80, size: size)
        _ = try source.host.createSnapshot(tag: 1, name: "one", priority: 0)
        try apply(try stream(source, from: nil, to: 1), to: replica)
        try fill(source, seed: 8, writes: 80, size: size)
        _ = try source.host.createSnapshot(tag: 2, name: "two", priority: 0)
        let delta = try stream(source, from: 1, to: 2)
        _ = try applyCut(delta, to: replica, cutAt: delta.count / 2, every: 128 << 10)
        #expect(try replica.image(nil) != replica.image(1), "the cut left part of the delta in the origin")
        // Not resumed: the whole delta again, after the origin went back to snapshot 1.
        try apply(delta, to: replica)
        #expect(try replica.image(2) == source.image(2))
    }
}
