// `ddsnap check`: verifies every invariant of docs/INVARIANTS.md against the committed
// state, naming the block and key range of each problem. With repair, fixes what is safe to
// fix (leaked chunks, i.e. marked in use but referenced by nothing) and nothing else.

public struct CheckReport: Sendable, Codable, Equatable {
    public var problems: [String] = []
    /// Chunks marked in use that nothing references (repairable).
    public var leakedChunks: [UInt64] = []
    public var repaired = false
    public var nodes: UInt64 = 0
    public var exceptions: UInt64 = 0
    public var privateChunks: UInt64 = 0
    public var snapshots: Int = 0
    public var isClean: Bool { problems.isEmpty && leakedChunks.isEmpty }
}

private struct ReferenceMap {
    var bits: [UInt64]
    let count: UInt64
    init(count: UInt64) {
        self.count = count
        bits = [UInt64](repeating: 0, count: Int((count + 63) / 64))
    }
    /// Marks `chunk`; returns a problem text when it is out of range or marked already.
    mutating func mark(_ chunk: UInt64, _ what: @autoclosure () -> String) -> String? {
        guard chunk < count else { return "\(what()) points at chunk \(chunk), past the end of the store (\(count) chunks)" }
        let w = Int(chunk >> 6), bit: UInt64 = 1 << (chunk & 63)
        if bits[w] & bit != 0 { return "chunk \(chunk) is referenced twice (again by \(what()))" }
        bits[w] |= bit
        return nil
    }
    func contains(_ chunk: UInt64) -> Bool { bits[Int(chunk >> 6)] & (1 << (chunk & 63)) != 0 }
}

extension Store {
    public func check(repair: Bool = false) throws -> CheckReport {
        try checkUsable()
        try commit()
        var report = CheckReport()
        let problemsMax = 1000
        func problem(_ text: String?) {
            guard let text, report.problems.count < problemsMax else { return }
            report.problems.append(text)
        }
        var refs = ReferenceMap(count: space.chunkCount)
        for slot in Format.superblockSlots { problem(refs.mark(slot, "superblock slot \(slot)")) }
        for (j, a) in space.indexAddresses.enumerated() { problem(refs.mark(a, "bitmap index block \(j)")) }
        for (i, a) in space.blockAddresses.enumerated() { problem(refs.mark(a, "bitmap block \(i)")) }

        // Snapshot records (I7), each found under its own tag in the tags tree.
        var liveEpochs: [UInt64] = []
        var records: UInt64 = 0
        do {
            try forEachRecord { r in
                records += 1
                if r.state == .normal { liveEpochs.append(r.epoch) }
                if r.isListed { report.snapshots += 1 }
                if r.epoch == 0 || r.epoch > superblock.epochLast { problem("snapshot \(r.tag): epoch \(r.epoch) outside 1...\(superblock.epochLast)") }
                if r.state == .deleting || r.state == .squashing { problem("snapshot \(r.tag): a \(r.state == .deleting ? "delete" : "squash") is unfinished") }
                let found = try tagTree.find(Key(r.tag, 0))
                if found != r.epoch { problem("tags tree: snapshot \(r.tag) (epoch \(r.epoch)) is \(found.map { "listed under epoch \($0)" } ?? "missing")") }
                return report.problems.count < problemsMax
            }
        } catch let e as StoreError {
            problem("snapshots tree: \(e)")
        }
        // Every record has its own tag entry; equal counts leave no tag entry without a record.
        if tagTree.count != records { problem("tags tree holds \(tagTree.count) entries for \(records) snapshot records") }

        // Tree structure: every node verified on load; keys within their parent's range (I2).
        for tree in [exceptionsByChunk, exceptionsByEpoch, privateChunks, snapshotTree, tagTree] {
            var entries: UInt64 = 0
            do {
                try tree.walk { node, low, high in
                    report.nodes += 1
                    problem(refs.mark(node.address, "\(tree.kind.name) node"))
                    let first = node.isLeaf ? 0 : 1
                    for i in first..<node.count {
                        let k = node.keys[i]
                        if let low, k < low { problem("block \(node.address) (\(tree.kind.name) node): key \(k) below its range [\(low), \(high.map { "\($0)" } ?? "end"))") }
                        if let high, k >= high { problem("block \(node.address) (\(tree.kind.name) node): key \(k) at or above its range end \(high)") }
                    }
                    if node.isLeaf { entries += UInt64(node.count) }
                }
            } catch let e as StoreError {
                problem("\(tree.kind.name) tree: \(e)")
            }
            if entries != tree.count { problem("\(tree.kind.name) tree: holds \(entries) entries, superblock records \(tree.count)") }
        }

        // Exceptions: mirrored in both trees (I3), data chunks owned once (I1), live (I4).
        var previous: (chunk: UInt64, epoch: UInt64)?
        try? exceptionsByChunk.scan(from: .min) { key, node, i in
            let (c, e, at) = (key.hi, key.lo, node.value(i))
            report.exceptions += 1
            problem(refs.mark(at, "exception (chunk \(c), epoch \(e)) in block \(node.address)"))
            if e == 0 || e > superblock.epochLast { problem("block \(node.address): exception (chunk \(c), epoch \(e)) has an epoch outside 1...\(superblock.epochLast)") }
            do {
                if try exceptionsByEpoch.find(Key(e, c)) != at {
                    problem("exception (chunk \(c), epoch \(e)) -> \(at) is missing from the exceptions-by-epoch tree or differs there")
                }
            } catch { problem("exceptions-by-epoch lookup of (\(e), \(c)): \(error)") }
            let epochPrevious = previous.map { $0.chunk == c ? $0.epoch : 0 } ?? 0
            if !hasLiveEpoch(after: epochPrevious, upTo: e, in: liveEpochs) {
                problem("exception (chunk \(c), epoch \(e)) in block \(node.address) is dead: no live snapshot in (\(epochPrevious), \(e)]")
            }
            previous = (c, e)
            return report.problems.count < problemsMax
        }
        if exceptionsByEpoch.count != exceptionsByChunk.count {
            problem("exceptions-by-epoch holds \(exceptionsByEpoch.count) entries, exceptions-by-chunk \(exceptionsByChunk.count)")
        }

        // Private chunks belong to a normal snapshot, within its size (I5).
        try? privateChunks.scan(from: .min) { key, node, i in
            report.privateChunks += 1
            problem(refs.mark(node.value(i), "private chunk (epoch \(key.hi), chunk \(key.lo)) in block \(node.address)"))
            if let r = try? record(epoch: key.hi), r.state == .normal {
                if key.lo * chunkSize >= r.originSizeBytes { problem("block \(node.address): private chunk \(key.lo) of snapshot \(r.tag) is past its size") }
            } else {
                problem("block \(node.address): private chunk (epoch \(key.hi), chunk \(key.lo)) belongs to no normal snapshot")
            }
            return report.problems.count < problemsMax
        }

        // The bitmap marks exactly what is referenced (I6).
        for c in 0..<space.chunkCount {
            let used = space.isAllocated(c), referenced = refs.contains(c)
            if used && !referenced { report.leakedChunks.append(c) }
            if referenced && !used { problem("chunk \(c) is referenced but marked free in the bitmap") }
        }
        if space.freeCount != superblock.freeChunkCount { problem("free count \(space.freeCount) differs from the superblock's \(superblock.freeChunkCount)") }

        if repair && report.problems.isEmpty && !report.leakedChunks.isEmpty {
            try mutate {
                for c in report.leakedChunks { space.free(c) }
                try commit()
            }
            report.repaired = true
        }
        return report
    }

    private func hasLiveEpoch(after low: UInt64, upTo high: UInt64, in sorted: [UInt64]) -> Bool {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] <= low { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.count && sorted[lo] <= high
    }
}
