// `ddsnap check`: verifies every invariant of docs/INVARIANTS.md against the committed
// state, naming the block and key range of each problem. With repair, fixes what is safe to
// fix (leaked chunks, i.e. marked in use but referenced by nothing) and nothing else.

public struct CheckReport: Sendable, Codable, Equatable {
    public var problems: [String] = []
    /// Chunks marked in use that nothing references (repairable): how many, and the first
    /// thousand of them.
    public var leakedChunkCount: UInt64 = 0
    public var leakedChunks: [UInt64] = []
    public var repaired = false
    public var nodes: UInt64 = 0
    public var exceptions: UInt64 = 0
    public var privateChunks: UInt64 = 0
    public var snapshots: Int = 0
    public var isClean: Bool { problems.isEmpty && leakedChunkCount == 0 }
}

struct ReferenceMap {
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

/// What one pass of `check` gathers: the problems, and every chunk a structure refers to.
struct CheckAudit {
    var report = CheckReport()
    var refs: ReferenceMap
    /// At most this many problems and listed leaked chunks are kept (counts go on).
    static let listedMax = 1000

    init(chunks: UInt64) { refs = ReferenceMap(count: chunks) }

    mutating func problem(_ text: String?) {
        guard let text, report.problems.count < Self.listedMax else { return }
        report.problems.append(text)
    }
    var full: Bool { report.problems.count >= Self.listedMax }
}

extension Store {
    /// Verifies every invariant of docs/INVARIANTS.md on the state after a checkpoint commit.
    /// With `repair`, frees leaked chunks when that is the only problem.
    public func check(repair: Bool = false) throws -> CheckReport {
        try checkUsable()
        try commit()
        var audit = try audit(finished: true)
        if repair && audit.report.problems.isEmpty && audit.report.leakedChunkCount > 0 {
            try mutate {
                for c in 0..<space.chunkCount where space.isAllocated(c) && !audit.refs.contains(c) { space.free(c) }
                try commit()
            }
            audit.report.repaired = true
        }
        return audit.report
    }

    /// Runs every check on the state in memory. `finished: false` leaves out what holds only
    /// between operations (a delete or squash may be half done across commits): record
    /// states, liveness of exceptions and owners of private chunks.
    /// Damage found is reported as problems; other errors (a failing device) are thrown.
    func audit(finished: Bool) throws -> CheckAudit {
        var audit = CheckAudit(chunks: space.chunkCount)
        checkMetadataBlocks(&audit)
        let liveEpochs = try checkRecords(&audit, finished: finished)
        try checkTrees(&audit)
        try checkExceptions(&audit, liveEpochs: finished ? liveEpochs : nil)
        try checkPrivateChunks(&audit, ownersKnown: finished)
        checkSpaceMap(&audit)
        return audit
    }

    /// A device that failed to read says nothing about the store: check fails with that error
    /// (run it again) instead of reporting damage that is not there.
    private func passIOErrors(_ e: StoreError) throws {
        if case .io = e { throw e }
    }

    /// The debug self-check (`StoreOptions.selfCheck`): after every commit, the trees and
    /// the space map must be exactly right, or the process stops at the commit that broke them.
    func selfCheckAfterCommit() throws {
        guard options.selfCheck else { return }
        let audit = try audit(finished: false)
        let leaks = audit.report.leakedChunks.prefix(5).map(String.init).joined(separator: ", ")
        precondition(audit.report.isClean, "self-check after commit \(superblock.sequence): \(audit.report.problems.prefix(3)) leaked \(audit.report.leakedChunkCount) [\(leaks)]")
    }

    /// I1: superblock slots, bitmap blocks and index blocks, each owned once.
    private func checkMetadataBlocks(_ audit: inout CheckAudit) {
        for slot in Format.superblockSlots { audit.problem(audit.refs.mark(slot, "superblock slot \(slot)")) }
        for (j, a) in space.indexAddresses.enumerated() { audit.problem(audit.refs.mark(a, "bitmap index block \(j)")) }
        for (i, a) in space.blockAddresses.enumerated() { audit.problem(audit.refs.mark(a, "bitmap block \(i)")) }
    }

    /// I7: snapshot records, each found under its own tag in the tags tree. Returns the
    /// epochs of normal snapshots, in increasing order.
    private func checkRecords(_ audit: inout CheckAudit, finished: Bool) throws -> [UInt64] {
        var liveEpochs: [UInt64] = []
        var records: UInt64 = 0
        do {
            try forEachRecord { r in
                records += 1
                if r.state == .normal { liveEpochs.append(r.epoch) }
                if r.isListed { audit.report.snapshots += 1 }
                if r.epoch == 0 || r.epoch > superblock.epochLast { audit.problem("snapshot \(r.tag): epoch \(r.epoch) outside 1...\(superblock.epochLast)") }
                if finished && (r.state == .deleting || r.state == .squashing) { audit.problem("snapshot \(r.tag): a \(r.state == .deleting ? "delete" : "squash") is unfinished") }
                let found = try tagTree.find(Key(r.tag, 0))
                if found != r.epoch { audit.problem("tags tree: snapshot \(r.tag) (epoch \(r.epoch)) is \(found.map { "listed under epoch \($0)" } ?? "missing")") }
                return !audit.full
            }
        } catch let e as StoreError {
            try passIOErrors(e)
            audit.problem("snapshots tree: \(e)")
        }
        // Every record has its own tag entry; equal counts leave no tag entry without a record.
        if tagTree.count != records { audit.problem("tags tree holds \(tagTree.count) entries for \(records) snapshot records") }
        return liveEpochs
    }

    /// I2: every node verified on load (or, in memory, here): keys strictly increasing and
    /// within the range the parent gives; entry counts as the superblock records.
    private func checkTrees(_ audit: inout CheckAudit) throws {
        for tree in [exceptionsByChunk, exceptionsByEpoch, privateChunks, snapshotTree, tagTree] {
            var entries: UInt64 = 0
            let name = tree.kind.name
            do {
                try tree.walk { node, low, high in
                    audit.report.nodes += 1
                    audit.problem(audit.refs.mark(node.address, "\(name) node"))
                    for i in 1..<max(node.count, 1) where !(node.keys[i - 1] < node.keys[i]) {
                        audit.problem("block \(node.address) (\(name) node): keys out of order at entry \(i): \(node.keys[i - 1]) then \(node.keys[i])")
                    }
                    // key[0] of an internal node is a lower bound that lookups ignore.
                    for i in (node.isLeaf ? 0 : 1)..<node.count {
                        let k = node.keys[i]
                        if let low, k < low { audit.problem("block \(node.address) (\(name) node): key \(k) below its range [\(low), \(high.map { "\($0)" } ?? "end"))") }
                        if let high, k >= high { audit.problem("block \(node.address) (\(name) node): key \(k) at or above its range end \(high)") }
                    }
                    if node.isLeaf { entries += UInt64(node.count) }
                }
            } catch let e as StoreError {
                try passIOErrors(e)
                audit.problem("\(name) tree: \(e)")
            }
            if entries != tree.count { audit.problem("\(name) tree: holds \(entries) entries, superblock records \(tree.count)") }
        }
    }

    /// I1, I3, I4: each exception's chunk owned once, mirrored in both trees, and (when
    /// `liveEpochs` is given) read by some normal snapshot.
    private func checkExceptions(_ audit: inout CheckAudit, liveEpochs: [UInt64]?) throws {
        var previous: (chunk: UInt64, epoch: UInt64)?
        do {
            try exceptionsByChunk.scan(from: .min) { key, node, i in
                let (c, e, at) = (key.hi, key.lo, node.value(i))
                audit.report.exceptions += 1
                audit.problem(audit.refs.mark(at, "exception (chunk \(c), epoch \(e)) in block \(node.address)"))
                if e == 0 || e > superblock.epochLast { audit.problem("block \(node.address): exception (chunk \(c), epoch \(e)) has an epoch outside 1...\(superblock.epochLast)") }
                do {
                    if try exceptionsByEpoch.find(Key(e, c)) != at {
                        audit.problem("exception (chunk \(c), epoch \(e)) -> \(at) is missing from the exceptions-by-epoch tree or differs there")
                    }
                } catch let error as StoreError { try passIOErrors(error); audit.problem("exceptions-by-epoch lookup of (\(e), \(c)): \(error)") }
                let epochPrevious = previous.map { $0.chunk == c ? $0.epoch : 0 } ?? 0
                if let liveEpochs, !hasLiveEpoch(after: epochPrevious, upTo: e, in: liveEpochs) {
                    audit.problem("exception (chunk \(c), epoch \(e)) in block \(node.address) is dead: no live snapshot in (\(epochPrevious), \(e)]")
                }
                previous = (c, e)
                return !audit.full
            }
        } catch let e as StoreError {
            try passIOErrors(e)
            audit.problem("exceptions-by-chunk scan: \(e)")
        }
        if exceptionsByEpoch.count != exceptionsByChunk.count {
            audit.problem("exceptions-by-epoch holds \(exceptionsByEpoch.count) entries, exceptions-by-chunk \(exceptionsByChunk.count)")
        }
    }

    /// I1, I5: private chunks owned once and (when `ownersKnown`) belonging to a normal
    /// snapshot, within its size.
    private func checkPrivateChunks(_ audit: inout CheckAudit, ownersKnown: Bool) throws {
        do {
            try privateChunks.scan(from: .min) { key, node, i in
                audit.report.privateChunks += 1
                audit.problem(audit.refs.mark(node.value(i), "private chunk (epoch \(key.hi), chunk \(key.lo)) in block \(node.address)"))
                guard ownersKnown else { return true }
                if let r = try record(epoch: key.hi), r.state == .normal {
                    if key.lo >= (r.originSizeBytes + chunkSize - 1) / chunkSize { audit.problem("block \(node.address): private chunk \(key.lo) of snapshot \(r.tag) is past its size") }
                } else {
                    audit.problem("block \(node.address): private chunk (epoch \(key.hi), chunk \(key.lo)) belongs to no normal snapshot")
                }
                return !audit.full
            }
        } catch let e as StoreError {
            try passIOErrors(e)
            audit.problem("private-chunks scan: \(e)")
        }
    }

    /// I1, I6: the bitmap marks exactly what is referenced; its free count is the superblock's.
    private func checkSpaceMap(_ audit: inout CheckAudit) {
        for c in 0..<space.chunkCount {
            let used = space.isAllocated(c), referenced = audit.refs.contains(c)
            if used && !referenced {
                audit.report.leakedChunkCount += 1
                if audit.report.leakedChunks.count < CheckAudit.listedMax { audit.report.leakedChunks.append(c) }
            }
            if referenced && !used { audit.problem("chunk \(c) is referenced but marked free in the bitmap") }
        }
        if loggedState {
            // After a copy-out log commit the superblock's count is the checkpoint's.
            return
        }
        if space.freeCount != superblock.freeChunkCount { audit.problem("free count \(space.freeCount) differs from the superblock's \(superblock.freeChunkCount)") }
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
