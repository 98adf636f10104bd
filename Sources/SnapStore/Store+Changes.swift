// Changed chunks between two snapshots, or a snapshot and the origin: metadata only, no data
// reads, streamed in chunk order without materializing the list, at a cost proportional to
// the answer (times the log of the number of epochs involved).
//
// Between live snapshots a < b (epochs), chunk c may differ exactly when c has an exception
// with epoch in [a, b): the first write to c after a was copied out with the epoch of the
// newest snapshot at that time, which is >= a and < b, and a still reads that exception, so
// it is still there. Add both sides' private chunks, and the chunks past the smaller size.

import HeapModule

public enum StoreSide: Equatable, Sendable, Codable, CustomStringConvertible {
    case origin
    case snapshot(UInt64)

    public var description: String {
        switch self {
        case .origin: return "origin"
        case let .snapshot(tag): return "snapshot \(tag)"
        }
    }
}

/// One sorted stream of chunk numbers taking part in a merge.
private struct MergeHead: Comparable {
    var chunk: UInt64
    var epoch: UInt64
    var source: UInt8  // 0: exceptions at `epoch`, 1: private chunks of `epoch`
    static func < (a: MergeHead, b: MergeHead) -> Bool {
        (a.chunk, a.epoch, a.source) < (b.chunk, b.epoch, b.source)
    }
}

extension Store {
    /// Calls `visit` with each changed chunk number in increasing order, each once, starting
    /// at `start`; `visit` returns false to stop.
    public func changedChunks(from a: StoreSide, to b: StoreSide, startingAt start: UInt64 = 0,
                              _ visit: (UInt64) throws -> Bool) throws {
        try checkUsable()
        func resolve(_ side: StoreSide) throws -> (epoch: UInt64, size: UInt64, privateOf: UInt64?) {
            switch side {
            case .origin: return (UInt64.max, superblock.originSizeBytes, nil)
            case let .snapshot(tag):
                let r = try record(tag: tag)
                guard r.state == .normal else { throw StoreError.snapshotSquashed(tag) }
                return (r.epoch, r.originSizeBytes, r.epoch)
            }
        }
        let x = try resolve(a), y = try resolve(b)
        if x.epoch == y.epoch { return }
        let (low, high) = x.epoch < y.epoch ? (x, y) : (y, x)
        var heap = Heap<MergeHead>()
        // One stream per epoch that has exceptions in [low, high).
        var epoch = low.epoch
        while epoch < high.epoch, let hit = try exceptionsByEpoch.ceiling(Key(epoch, start)) {
            guard hit.key.hi < high.epoch else { break }
            if hit.key.hi != epoch && hit.key.lo < start {
                // A later epoch, found at one of its chunks below `start`: it may have more
                // from `start` on, so look again within it.
                epoch = hit.key.hi
                continue
            }
            heap.insert(MergeHead(chunk: hit.key.lo, epoch: hit.key.hi, source: 0))
            if hit.key.hi == .max { break }
            epoch = hit.key.hi + 1
        }
        for owner in [low.privateOf, high.privateOf].compactMap({ $0 }) {
            if let hit = try privateChunks.ceiling(Key(owner, start)), hit.key.hi == owner {
                heap.insert(MergeHead(chunk: hit.key.lo, epoch: owner, source: 1))
            }
        }
        // Chunks covered by one side's size only.
        let smaller = min(low.size, high.size), larger = max(low.size, high.size)
        var tail = max(smaller / chunkSize, start)
        let tailEnd = (larger + chunkSize - 1) / chunkSize
        if smaller == larger { tail = tailEnd }
        var lastEmitted: UInt64?
        while true {
            let next = heap.min
            let fromTail = tail < tailEnd && (next == nil || tail <= next!.chunk)
            let chunk: UInt64
            if fromTail {
                chunk = tail
                tail += 1
            } else if let head = heap.popMin() {
                chunk = head.chunk
                // Advance that stream.
                if head.chunk < .max {
                    let tree = head.source == 0 ? exceptionsByEpoch : privateChunks
                    if let hit = try tree.ceiling(Key(head.epoch, head.chunk + 1)), hit.key.hi == head.epoch {
                        heap.insert(MergeHead(chunk: hit.key.lo, epoch: head.epoch, source: head.source))
                    }
                }
            } else {
                return
            }
            if chunk == lastEmitted { continue }
            lastEmitted = chunk
            if try !visit(chunk) { return }
        }
    }

    /// The whole list (tests and small tools; streaming callers use the visitor form).
    public func changedChunks(from a: StoreSide, to b: StoreSide) throws -> [UInt64] {
        var out: [UInt64] = []
        try changedChunks(from: a, to: b) { out.append($0); return true }
        return out
    }
}

/// Space a snapshot holds in the store, in chunks.
public struct SnapshotUsage: Equatable, Sendable, Codable {
    /// Freed if this snapshot were deleted: its private chunks and the exceptions only it reads.
    public var uniqueChunks: UInt64
    /// Exceptions it reads that other snapshots read too.
    public var sharedChunks: UInt64
    public init(uniqueChunks: UInt64, sharedChunks: UInt64) {
        self.uniqueChunks = uniqueChunks
        self.sharedChunks = sharedChunks
    }
}

extension Store {
    /// Exact accounting for one snapshot: a merge over the exceptions it can read (epochs
    /// >= its own), taking per chunk the one it reads (smallest epoch), and classifying it
    /// with the same rule a delete uses.
    public func usage(tag: UInt64) throws -> SnapshotUsage {
        try checkUsable()
        let r = try record(tag: tag)
        guard r.state == .normal else { return SnapshotUsage(uniqueChunks: 0, sharedChunks: 0) }
        var unique: UInt64 = 0, shared: UInt64 = 0
        try privateChunks.scan(from: Key(r.epoch, 0)) { key, _, _ in
            guard key.hi == r.epoch else { return false }
            unique += 1
            return true
        }
        let (previous, next) = try liveNeighbours(of: r.epoch)
        var heap = Heap<MergeHead>()
        var epoch = r.epoch
        while let hit = try exceptionsByEpoch.ceiling(Key(epoch, 0)) {
            heap.insert(MergeHead(chunk: hit.key.lo, epoch: hit.key.hi, source: 0))
            if hit.key.hi == .max { break }
            epoch = hit.key.hi + 1
        }
        var lastChunk: UInt64?
        while let head = heap.popMin() {
            if let hit = try exceptionsByEpoch.ceiling(Key(head.epoch, head.chunk &+ 1)), hit.key.hi == head.epoch, head.chunk < .max {
                heap.insert(MergeHead(chunk: hit.key.lo, epoch: head.epoch, source: 0))
            }
            if head.chunk == lastChunk { continue }
            lastChunk = head.chunk
            // Private chunks shadow the shared view.
            if privateChunks.count > 0, try privateChunks.find(Key(r.epoch, head.chunk)) != nil { continue }
            if head.epoch < next {
                let before = try exceptionsByChunk.floor(Key(head.chunk, head.epoch - 1))
                let epochPrevious = before.map { $0.key.hi == head.chunk ? $0.key.lo : 0 } ?? 0
                if previous == 0 || previous <= epochPrevious { unique += 1 } else { shared += 1 }
            } else {
                shared += 1
            }
        }
        return SnapshotUsage(uniqueChunks: unique, sharedChunks: shared)
    }
}
