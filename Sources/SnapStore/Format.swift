// On-disk format constants and the common metadata block header (docs/FORMAT.md, "Block
// header"). Every metadata block proves what it is and where it belongs: its checksum is salted
// by its type, and it records its own address and the commit sequence that wrote it.

public enum Format {
    public static let version: UInt16 = 1
    public static let magic: [UInt8] = Array("ZUMASNAP".utf8)
    /// Incompatible feature bit: this superblock lists verified runs (docs/FORMAT.md
    /// "Verified commits"); it is the commit only if every run reads back with its checksum.
    public static let incompatVerifiedCommit: UInt32 = 1
    /// Incompatible feature bit: this superblock carries a copy-out log (docs/FORMAT.md
    /// "Copy-out log"): exceptions and allocations its trees and bitmap do not show yet.
    public static let incompatCopyOutLog: UInt32 = 2
    /// Incompatible feature bit: the store keeps a tags tree (tag -> epoch) whose root is
    /// the last 24 bytes of the origin path field (docs/FORMAT.md "Superblock"). Every store
    /// this build writes has it; a store without it gets it at its first open.
    public static let incompatTagIndex: UInt32 = 4
    /// Incompatible feature bits this build understands.
    public static let incompatFeaturesKnown: UInt32 = incompatVerifiedCommit | incompatCopyOutLog | incompatTagIndex
    public static let chunkSizeMin = 4096
    public static let chunkSizeMax = 1 << 20
    /// Superblock slots live at chunk 0 and chunk 1; each slot uses the first 4 KiB.
    public static let superblockBytes = 4096
    public static let superblockSlots: [UInt64] = [0, 1]
    /// Bytes of the common header at the start of every non-superblock metadata block.
    public static let headerBytes = 32
    /// Bytes of the origin path field; with the tag index its last 24 hold the tags root.
    public static let originPathField = 1024
    /// Longest origin path a store with the tag index records.
    public static let originPathMax = originPathField - 24
    public static let snapshotNameMax = 63
    /// Highest tree a superblock may record: far above any store (a node holds at least 31
    /// entries), low enough that a forged height is refused before it is walked.
    public static let treeHeightMax: UInt32 = 32
    /// Highest commit sequence and epoch a superblock may record: 2^62, which no store reaches
    /// (a commit a nanosecond for a century is 2^61.5), so that counting on never overflows.
    public static let counterMax: UInt64 = 1 << 62
}

/// Block types; the raw value is also the CRC32C seed ("salt"), so a block of one type can
/// never pass for another.
public enum BlockType: UInt16, Sendable {
    case superblock = 0x5342   // "SB"
    case node = 0x4E44         // "ND"
    case bitmap = 0x424D       // "BM"
    case bitmapIndex = 0x4249  // "BI"

    var salt: UInt32 { UInt32(rawValue) &* 0x9E37_79B9 }
    var name: String {
        switch self {
        case .superblock: return "superblock"
        case .node: return "tree node"
        case .bitmap: return "bitmap block"
        case .bitmapIndex: return "bitmap index block"
        }
    }
}

/// The five trees of a store.
public enum TreeKind: UInt8, CaseIterable, Sendable {
    /// (chunk, epoch) -> store chunk: what each snapshot reads.
    case exceptionsByChunk = 1
    /// (epoch, chunk) -> store chunk: the same exceptions by epoch, for delete and changelists.
    case exceptionsByEpoch = 2
    /// (snapshot epoch, chunk) -> store chunk: private chunks of writable snapshots.
    case privateChunks = 3
    /// (epoch, 0) -> snapshot record.
    case snapshots = 4
    /// (tag, 0) -> epoch: finds a snapshot by its user-visible tag.
    case tags = 5

    var name: String {
        switch self {
        case .exceptionsByChunk: return "exceptions-by-chunk"
        case .exceptionsByEpoch: return "exceptions-by-epoch"
        case .privateChunks: return "private-chunks"
        case .snapshots: return "snapshots"
        case .tags: return "tags"
        }
    }
    /// Value size in 8-byte words.
    var valueWords: Int { self == .snapshots ? SnapshotRecord.words : 1 }
}

/// The common 32-byte header of nodes, bitmap blocks and bitmap index blocks.
struct BlockHeader: Equatable {
    var type: BlockType
    var treeKind: UInt8 = 0
    var level: UInt8 = 0
    var address: UInt64
    var sequence: UInt64
    var count: UInt32 = 0
    var valueWords: UInt32 = 0

    /// Writes the header (without checksum) into the start of `block`.
    func encode(into block: UnsafeMutableRawBufferPointer) {
        block.putU32(0, 0)
        block.putU16(type.rawValue, 4)
        block.putU8(treeKind, 6)
        block.putU8(level, 7)
        block.putU64(address, 8)
        block.putU64(sequence, 16)
        block.putU32(count, 24)
        block.putU32(valueWords, 28)
    }

    /// Seals a fully encoded block: checksum over bytes [4, end) seeded by the type's salt.
    static func seal(_ block: UnsafeMutableRawBufferPointer, type: BlockType) {
        let sum = crc32c(UnsafeRawBufferPointer(rebasing: block[4...]), seed: type.salt)
        block.putU32(sum, 0)
    }

    /// Decodes and verifies a block read from `address`: checksum, type and self-address.
    /// `maxSequence` is the sequence of the superblock we opened: a newer block is stale junk.
    static func verify(_ block: UnsafeRawBufferPointer, expect type: BlockType, address: UInt64,
                       maxSequence: UInt64) throws -> BlockHeader {
        let stored = block.u32(0)
        let actualType = block.u16(4)
        guard actualType == type.rawValue else {
            let what = BlockType(rawValue: actualType)?.name ?? String(format16: actualType)
            throw StoreError.corrupt("block \(address): expected a \(type.name), found \(what)")
        }
        let sum = crc32c(UnsafeRawBufferPointer(rebasing: block[4...]), seed: type.salt)
        guard sum == stored else {
            throw StoreError.corrupt("block \(address) (\(type.name)): checksum mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(sum, radix: 16)))")
        }
        let header = BlockHeader(type: type, treeKind: block.u8(6), level: block.u8(7), address: block.u64(8),
                                 sequence: block.u64(16), count: block.u32(24), valueWords: block.u32(28))
        guard header.address == address else {
            throw StoreError.corrupt("block \(address) (\(type.name)): records address \(header.address), a misdirected write")
        }
        guard header.sequence <= maxSequence else {
            throw StoreError.corrupt("block \(address) (\(type.name)): written by commit \(header.sequence), newer than the superblock's \(maxSequence)")
        }
        return header
    }
}

extension String {
    init(format16 value: UInt16) { self = "unknown type 0x" + String(value, radix: 16) }
}
