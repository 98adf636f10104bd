// The root of everything, written alternately to two slots (chunk 0 and chunk 1) with an
// increasing sequence number: a torn superblock write can never leave the store unopenable,
// because the other slot still holds the previous commit. Layout: docs/FORMAT.md "Superblock".

public struct TreeRoot: Equatable, Sendable {
    /// Address of the root node, 0 when the tree is empty.
    public var root: UInt64 = 0
    /// Levels; 0 when empty, 1 when the root is a leaf.
    public var height: UInt32 = 0
    public var count: UInt64 = 0
    public init(root: UInt64 = 0, height: UInt32 = 0, count: UInt64 = 0) {
        self.root = root
        self.height = height
        self.count = count
    }
}

/// A run of store chunks written by a single-flush commit, with the CRC32C (seed 0) of its
/// bytes: open accepts the superblock only if every run reads back with its checksum.
public struct VerifiedRun: Equatable, Sendable {
    public var address: UInt64
    public var count: UInt32
    public var crc: UInt32
    public init(address: UInt64, count: UInt32, crc: UInt32) {
        self.address = address
        self.count = count
        self.crc = crc
    }
}

/// Copy-outs committed since the last checkpoint (docs/FORMAT.md "Copy-out log"): origin
/// chunks `chunk..<chunk + count` copied to store chunks `address..<address + count`, as
/// exceptions labelled `epoch`. Open applies them on top of the trees and bitmap the
/// superblock points at.
public struct CopyOutLogEntry: Equatable, Sendable {
    public var chunk: UInt64
    public var epoch: UInt64
    public var address: UInt64
    public var count: UInt32
    public init(chunk: UInt64, epoch: UInt64, address: UInt64, count: UInt32) {
        self.chunk = chunk
        self.epoch = epoch
        self.address = address
        self.count = count
    }

    /// Does `next` continue this entry (same epoch, both chunk ranges contiguous)?
    func isContinued(by next: CopyOutLogEntry) -> Bool {
        next.epoch == epoch && next.chunk == chunk + UInt64(count) && next.address == address + UInt64(count)
            && UInt64(count) + UInt64(next.count) <= UInt64(UInt32.max)
    }

    /// Appends `entry` to `log`, joining it to the last entry when it continues it.
    static func append(_ entry: CopyOutLogEntry, to log: inout [CopyOutLogEntry]) {
        if let last = log.last, last.isContinued(by: entry) {
            log[log.count - 1].count += entry.count
        } else {
            log.append(entry)
        }
    }
}

public struct Superblock: Equatable, Sendable {
    public var sequence: UInt64 = 0
    public var chunkSizeBytes: UInt32
    public var featuresIncompat: UInt32 = 0
    public var featuresRoCompat: UInt32 = 0
    public var featuresCompat: UInt32 = 0
    public var storeChunkCount: UInt64
    public var originSizeBytes: UInt64
    public var volumeUUID: [UInt8]
    public var epochLast: UInt64 = 0
    public var freeChunkCount: UInt64 = 0
    public var snapshotCount: UInt64 = 0
    public var createdNanoseconds: UInt64
    public var trees: [TreeRoot] = Array(repeating: TreeRoot(), count: TreeKind.allCases.count)
    public var originIdentity: DeviceIdentity
    public var originPath: String
    public var bitmapBlockCount: UInt32 = 0
    public var warnFillPercent: UInt32 = 90
    public var indexAddresses: [UInt64] = []
    /// Empty: the commit was durable before this superblock was written (two flushes).
    /// Otherwise every block of the commit, listed for open to verify (one flush).
    public var verifiedRuns: [VerifiedRun] = []
    /// Copy-outs since the last checkpoint; empty for a checkpoint.
    public var copyOutLog: [CopyOutLogEntry] = []

    public init(chunkSizeBytes: UInt32, storeChunkCount: UInt64, originSizeBytes: UInt64, volumeUUID: [UInt8],
                createdNanoseconds: UInt64, originIdentity: DeviceIdentity, originPath: String) {
        self.chunkSizeBytes = chunkSizeBytes
        self.storeChunkCount = storeChunkCount
        self.originSizeBytes = originSizeBytes
        self.volumeUUID = volumeUUID
        self.createdNanoseconds = createdNanoseconds
        self.originIdentity = originIdentity
        self.originPath = originPath
    }

    static let treesOffset = 112
    static let pathOffset = 256
    static let indexOffset = pathOffset + Format.originPathField
    /// With the tag index: the tags tree root, the last 24 bytes of the path field.
    static let tagsRootOffset = pathOffset + Format.originPathMax
    /// Roots at `treesOffset`: the first four trees; the tags root has its own place.
    static let fixedRoots = 4
    /// Where tree root `i` (in `TreeKind` order) is kept.
    static func rootOffset(_ i: Int) -> Int { i < fixedRoots ? treesOffset + i * 24 : tagsRootOffset }

    /// Does this store keep the tags tree?
    public var hasTagIndex: Bool { featuresIncompat & Format.incompatTagIndex != 0 }
    public static let indexAddressesMax = (Format.superblockBytes - indexOffset) / 8
    static let runBytes = 16
    static let logEntryBytes = 32

    /// How many verified runs fit after `indexCount` bitmap index addresses.
    public static func runCapacity(indexCount: Int) -> Int {
        max(0, (Format.superblockBytes - indexOffset - indexCount * 8) / runBytes)
    }

    /// How many copy-out log entries fit after `indexCount` index addresses and `runCount` runs.
    public static func logCapacity(indexCount: Int, runCount: Int) -> Int {
        max(0, (Format.superblockBytes - indexOffset - indexCount * 8 - runCount * runBytes) / logEntryBytes)
    }

    public func encode() -> [UInt8] {
        precondition(volumeUUID.count == 16)
        precondition(indexAddresses.count <= Superblock.indexAddressesMax)
        precondition(verifiedRuns.count <= Superblock.runCapacity(indexCount: indexAddresses.count))
        precondition(copyOutLog.count <= Superblock.logCapacity(indexCount: indexAddresses.count, runCount: verifiedRuns.count))
        let path = Array(originPath.utf8)
        precondition(path.count <= (hasTagIndex ? Format.originPathMax : Format.originPathField))
        precondition(hasTagIndex || trees[Superblock.fixedRoots] == TreeRoot(), "a tags tree needs the tag-index bit")
        var bytes = [UInt8](repeating: 0, count: Format.superblockBytes)
        bytes.withUnsafeMutableBytes { b in
            b.putU16(BlockType.superblock.rawValue, 4)
            b.putU16(Format.version, 6)
            for (i, m) in Format.magic.enumerated() { b.putU8(m, 8 + i) }
            b.putU64(Format.superblockSlots[Int(sequence % 2)], 16)
            b.putU64(sequence, 24)
            b.putU32(chunkSizeBytes, 32)
            var incompat = verifiedRuns.isEmpty ? featuresIncompat & ~Format.incompatVerifiedCommit
                                                : featuresIncompat | Format.incompatVerifiedCommit
            incompat = copyOutLog.isEmpty ? incompat & ~Format.incompatCopyOutLog : incompat | Format.incompatCopyOutLog
            b.putU32(incompat, 36)
            b.putU32(featuresRoCompat, 40)
            b.putU32(featuresCompat, 44)
            b.putU64(storeChunkCount, 48)
            b.putU64(originSizeBytes, 56)
            for (i, u) in volumeUUID.enumerated() { b.putU8(u, 64 + i) }
            b.putU64(epochLast, 80)
            b.putU64(freeChunkCount, 88)
            b.putU64(snapshotCount, 96)
            b.putU64(createdNanoseconds, 104)
            for (i, t) in trees.enumerated() where i < Superblock.fixedRoots || hasTagIndex {
                let at = Superblock.rootOffset(i)
                b.putU64(t.root, at)
                b.putU32(t.height, at + 8)
                b.putU64(t.count, at + 16)
            }
            b.putU64(originIdentity.device, 208)
            b.putU64(originIdentity.inode, 216)
            b.putU32(originIdentity.kind.rawValue, 224)
            b.putU32(UInt32(path.count), 228)
            b.putU32(bitmapBlockCount, 232)
            b.putU32(UInt32(indexAddresses.count), 236)
            b.putU32(warnFillPercent, 240)
            b.putU32(UInt32(verifiedRuns.count), 244)
            b.putU32(UInt32(copyOutLog.count), 248)
            encodeLists(b, path: path)
            BlockHeader.seal(b, type: .superblock)
        }
        return bytes
    }

    /// The variable part: the origin path, index addresses, verified runs, copy-out log.
    private func encodeLists(_ b: UnsafeMutableRawBufferPointer, path: [UInt8]) {
        for (i, c) in path.enumerated() { b.putU8(c, Superblock.pathOffset + i) }
        for (i, a) in indexAddresses.enumerated() { b.putU64(a, Superblock.indexOffset + i * 8) }
        let runsAt = Superblock.indexOffset + indexAddresses.count * 8
        for (i, r) in verifiedRuns.enumerated() {
            b.putU64(r.address, runsAt + i * Superblock.runBytes)
            b.putU32(r.count, runsAt + i * Superblock.runBytes + 8)
            b.putU32(r.crc, runsAt + i * Superblock.runBytes + 12)
        }
        let logAt = runsAt + verifiedRuns.count * Superblock.runBytes
        for (i, e) in copyOutLog.enumerated() {
            let at = logAt + i * Superblock.logEntryBytes
            b.putU64(e.chunk, at)
            b.putU64(e.epoch, at + 8)
            b.putU64(e.address, at + 16)
            b.putU32(e.count, at + 24)
        }
    }

    /// Decodes one slot. Throws a reason when the slot is not a valid superblock.
    public static func decode(_ bytes: [UInt8], slot: UInt64) throws -> Superblock {
        precondition(bytes.count == Format.superblockBytes)
        return try bytes.withUnsafeBytes { b in
            let incompat = try checkHeader(b, slot: slot)
            let layout = try Layout(b, incompat: incompat, slot: slot)
            var trees: [TreeRoot] = []
            for i in 0..<TreeKind.allCases.count {
                guard i < fixedRoots || layout.tagged else { trees.append(TreeRoot()); continue }
                let at = rootOffset(i)
                guard b.u32(at + 12) == 0 else { throw StoreError.corrupt("superblock slot \(slot): reserved bytes are not zero") }
                let root = TreeRoot(root: b.u64(at), height: b.u32(at + 8), count: b.u64(at + 16))
                guard root.height <= Format.treeHeightMax, root.count <= Format.counterMax, (root.root == 0) == (root.height == 0),
                      (root.height == 0) == (root.count == 0) else {
                    throw StoreError.corrupt("superblock slot \(slot): \(TreeKind.allCases[i].name) tree root (block \(root.root), height \(root.height), \(root.count) entries) is impossible")
                }
                trees.append(root)
            }
            let kind = DeviceIdentity.Kind(rawValue: b.u32(224)) ?? .unknown
            var sb = Superblock(
                chunkSizeBytes: b.u32(32),
                storeChunkCount: b.u64(48),
                originSizeBytes: b.u64(56),
                volumeUUID: Array(b[64..<80]),
                createdNanoseconds: b.u64(104),
                originIdentity: DeviceIdentity(kind: kind, device: b.u64(208), inode: b.u64(216)),
                originPath: String(decoding: b[pathOffset..<(pathOffset + layout.pathLength)], as: UTF8.self))
            sb.sequence = b.u64(24)
            sb.featuresIncompat = incompat & ~(Format.incompatVerifiedCommit | Format.incompatCopyOutLog)
            sb.featuresRoCompat = b.u32(40)
            sb.featuresCompat = b.u32(44)
            sb.epochLast = b.u64(80)
            sb.freeChunkCount = b.u64(88)
            sb.snapshotCount = b.u64(96)
            sb.trees = trees
            sb.bitmapBlockCount = b.u32(232)
            sb.warnFillPercent = b.u32(240)
            sb.indexAddresses = (0..<layout.indexCount).map { b.u64(indexOffset + $0 * 8) }
            sb.verifiedRuns = (0..<layout.runCount).map {
                let at = layout.runsAt + $0 * runBytes
                return VerifiedRun(address: b.u64(at), count: b.u32(at + 8), crc: b.u32(at + 12))
            }
            sb.copyOutLog = (0..<layout.logCount).map {
                let at = layout.logAt + $0 * logEntryBytes
                return CopyOutLogEntry(chunk: b.u64(at), epoch: b.u64(at + 8), address: b.u64(at + 16), count: b.u32(at + 24))
            }
            guard sb.sequence <= Format.counterMax, sb.epochLast <= Format.counterMax else {
                throw StoreError.corrupt("superblock slot \(slot): commit sequence \(sb.sequence) or last epoch \(sb.epochLast) is beyond any store (at most 2^62)")
            }
            let cs = Int(sb.chunkSizeBytes)
            guard cs >= Format.chunkSizeMin, cs <= Format.chunkSizeMax, cs & (cs - 1) == 0 else {
                throw StoreError.corrupt("superblock slot \(slot): chunk size \(cs) is not a power of two in 4 KiB...1 MiB")
            }
            return sb
        }
    }

    /// Magic, block type, checksum, version, slot and known features; returns the incompatible
    /// feature bits.
    private static func checkHeader(_ b: UnsafeRawBufferPointer, slot: UInt64) throws -> UInt32 {
        guard Array(b[8..<16]) == Format.magic else { throw StoreError.corrupt("superblock slot \(slot): bad magic") }
        guard b.u16(4) == BlockType.superblock.rawValue else { throw StoreError.corrupt("superblock slot \(slot): wrong block type") }
        let sum = crc32c(UnsafeRawBufferPointer(rebasing: b[4...]), seed: BlockType.superblock.salt)
        guard sum == b.u32(0) else { throw StoreError.corrupt("superblock slot \(slot): checksum mismatch") }
        let version = b.u16(6)
        guard version == Format.version else { throw StoreError.unsupportedVersion(version) }
        guard b.u64(16) == slot else { throw StoreError.corrupt("superblock slot \(slot): records slot \(b.u64(16))") }
        let incompat = b.u32(36)
        guard incompat & ~Format.incompatFeaturesKnown == 0 else { throw StoreError.unsupportedFeatures(incompat) }
        return incompat
    }

    /// Where the variable part's lists lie, checked against the block and the feature bits,
    /// with every byte after them and in the path field's tail zero.
    private struct Layout {
        let tagged: Bool
        let pathLength, indexCount, runCount, logCount: Int
        let runsAt, logAt: Int

        init(_ b: UnsafeRawBufferPointer, incompat: UInt32, slot: UInt64) throws {
            tagged = incompat & Format.incompatTagIndex != 0
            let pathField = tagged ? Format.originPathMax : Format.originPathField
            pathLength = Int(b.u32(228))
            indexCount = Int(b.u32(236))
            runCount = Int(b.u32(244))
            logCount = Int(b.u32(248))
            guard pathLength <= pathField, indexCount <= indexAddressesMax,
                  runCount <= runCapacity(indexCount: indexCount),
                  logCount <= logCapacity(indexCount: indexCount, runCount: runCount) else {
                throw StoreError.corrupt("superblock slot \(slot): path, index, run or log count out of range")
            }
            guard (runCount > 0) == (incompat & Format.incompatVerifiedCommit != 0) else {
                throw StoreError.corrupt("superblock slot \(slot): \(runCount) verified runs disagree with the verified-commit feature bit")
            }
            guard (logCount > 0) == (incompat & Format.incompatCopyOutLog != 0) else {
                throw StoreError.corrupt("superblock slot \(slot): \(logCount) copy-out log entries disagree with the copy-out-log feature bit")
            }
            runsAt = indexOffset + indexCount * 8
            logAt = runsAt + runCount * runBytes
            let logEnd = logAt + logCount * logEntryBytes
            let (pathLength, logCount, logAt) = (pathLength, logCount, logAt)
            guard b.isZero(252..<256), b.isZero((pathOffset + pathLength)..<(pathOffset + pathField)),
                  b.isZero(logEnd..<Format.superblockBytes),
                  (0..<logCount).allSatisfy({ b.u32(logAt + $0 * logEntryBytes + 28) == 0 }) else {
                throw StoreError.corrupt("superblock slot \(slot): reserved bytes are not zero")
            }
        }
    }
}

// MARK: Reading the superblock of a store

extension Store {
    /// The newest complete commit's superblock (of both slots, the valid one with the
    /// highest sequence whose verified runs read back); `onEvent` hears when a newer,
    /// incomplete one was skipped.
    public static func readSuperblock(_ store: Device, onEvent: (StoreEvent) -> Void = { _ in }) throws -> Superblock {
        let (candidates, found, versionError) = try decodeSlots(store)
        var reasons = found
        // The newest slot wins if its commit is complete: a single-flush commit interrupted
        // by a crash fails its verified runs, and the other slot is the previous commit.
        var skipped: (sequence: UInt64, reason: String)?
        for sb in candidates {
            do {
                try verifyRuns(of: sb, on: store)
                if let skipped {
                    onEvent(.incompleteCommitSkipped(sequence: skipped.sequence, openedSequence: sb.sequence, reason: skipped.reason))
                }
                return sb
            } catch let e as StoreError {
                // A run that could not be read says nothing about the commit: taking it for
                // incomplete would open the previous commit and lose this one (its slot would
                // be overwritten by the next). Open fails instead; a later open may read it.
                if case .io = e { throw e }
                reasons.append("\(e)")
                skipped = skipped ?? (sb.sequence, "\(e)")
            }
        }
        if candidates.contains(where: { $0.sequence > 1 }) {
            throw StoreError.corrupt("no complete commit in \(store.path): \(reasons.joined(separator: "; "))")
        }
        if !candidates.isEmpty {
            throw StoreError.notAStore(path: store.path, reason: "its initialization did not complete")
        }
        if let versionError { throw versionError }
        throw StoreError.notAStore(path: store.path, reason: reasons.first ?? "device too small")
    }

    /// The superblocks of both slots that decode (newest first), why the others did not, and
    /// a version error if one was seen. Slot 0 is at byte 0; slot 1 is at byte `chunkSize`,
    /// which we learn from slot 0, or (when slot 0 is torn) by trying every legal chunk size.
    static func decodeSlots(_ store: Device) throws -> (found: [Superblock], reasons: [String], versionError: StoreError?) {
        var reasons: [String] = []
        var versionError: StoreError?
        func attempt(slot: UInt64, offset: UInt64) throws -> Superblock? {
            guard offset + UInt64(Format.superblockBytes) <= store.sizeBytes else { return nil }
            var bytes = [UInt8](repeating: 0, count: Format.superblockBytes)
            try store.read(into: &bytes, at: offset)
            do {
                let sb = try Superblock.decode(bytes, slot: slot)
                return UInt64(sb.chunkSizeBytes) * slot == offset ? sb : nil
            } catch let e as StoreError {
                switch e {
                case .unsupportedVersion, .unsupportedFeatures: versionError = e
                default: break
                }
                reasons.append("\(e)")
                return nil
            }
        }
        let first = try attempt(slot: 0, offset: 0)
        var second: Superblock?
        if let first {
            second = try attempt(slot: 1, offset: UInt64(first.chunkSizeBytes))
        } else {
            var size = Format.chunkSizeMin
            while second == nil && size <= Format.chunkSizeMax {
                second = try attempt(slot: 1, offset: UInt64(size))
                size *= 2
            }
        }
        let found = [first, second].compactMap { $0 }.sorted { $0.sequence > $1.sequence }
        return (found, reasons, versionError)
    }
}
