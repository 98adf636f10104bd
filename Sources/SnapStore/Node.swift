// A B+tree node: the in-memory form and its on-disk encoding (docs/FORMAT.md "Tree node").
// Leaves hold (key, value) entries; internal nodes hold (separator key, child address)
// entries where child i covers keys in [keys[i], keys[i+1]) and keys[0] stands for "minus
// infinity". Values are whole 8-byte words: one for exceptions, several for snapshot records.

public struct Key: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64
    public init(_ hi: UInt64, _ lo: UInt64) {
        self.hi = hi
        self.lo = lo
    }
    public static func < (a: Key, b: Key) -> Bool { a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo }
    public static let min = Key(0, 0)
    public static let max = Key(.max, .max)
    public var description: String { "(\(hi), \(lo))" }
}

final class Node {
    var address: UInt64
    let kind: TreeKind
    let level: UInt8
    var keys: [Key]
    /// Values (leaves: `stride` words per entry) or child addresses (internal: one each).
    var words: [UInt64]
    var lastUse: UInt64 = 0

    init(address: UInt64, kind: TreeKind, level: UInt8, keys: [Key] = [], words: [UInt64] = []) {
        self.address = address
        self.kind = kind
        self.level = level
        self.keys = keys
        self.words = words
    }

    var isLeaf: Bool { level == 0 }
    var stride: Int { isLeaf ? kind.valueWords : 1 }
    var count: Int { keys.count }

    static func capacity(blockSize: Int, stride: Int) -> Int {
        (blockSize - Format.headerBytes) / (16 + 8 * stride)
    }

    /// Index of the child covering `key` (internal nodes).
    func childIndex(for key: Key) -> Int {
        // Last i >= 1 with keys[i] <= key, else 0.
        var lo = 1, hi = keys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if keys[mid] <= key { lo = mid + 1 } else { hi = mid }
        }
        return lo - 1
    }

    /// First index with keys[i] >= key.
    func lowerBound(_ key: Key) -> Int {
        var lo = 0, hi = keys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if keys[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func value(_ i: Int) -> UInt64 { words[i * stride] }
    func values(_ i: Int) -> ArraySlice<UInt64> { words[(i * stride)..<((i + 1) * stride)] }

    func encode(into block: UnsafeMutableRawBufferPointer, sequence: UInt64) {
        let header = BlockHeader(type: .node, treeKind: kind.rawValue, level: level, address: address,
                                 sequence: sequence, count: UInt32(keys.count), valueWords: UInt32(stride))
        for i in 0..<block.count { block[i] = 0 }
        header.encode(into: block)
        let entryBytes = 16 + 8 * stride
        precondition(Format.headerBytes + keys.count * entryBytes <= block.count, "node overflow")
        var at = Format.headerBytes
        for i in 0..<keys.count {
            block.putU64(keys[i].hi, at)
            block.putU64(keys[i].lo, at + 8)
            for w in 0..<stride { block.putU64(words[i * stride + w], at + 16 + 8 * w) }
            at += entryBytes
        }
        BlockHeader.seal(block, type: .node)
    }

    static func decode(_ block: UnsafeRawBufferPointer, address: UInt64, expectKind: TreeKind,
                       expectLevel: UInt8?, maxSequence: UInt64) throws -> Node {
        let h = try BlockHeader.verify(block, expect: .node, address: address, maxSequence: maxSequence)
        let place = "block \(address) (\(expectKind.name) node)"
        guard h.treeKind == expectKind.rawValue else {
            throw StoreError.corrupt("\(place): belongs to tree kind \(h.treeKind)")
        }
        if let expectLevel, h.level != expectLevel {
            throw StoreError.corrupt("\(place): level \(h.level), expected \(expectLevel)")
        }
        let stride = h.level == 0 ? expectKind.valueWords : 1
        guard h.valueWords == stride else { throw StoreError.corrupt("\(place): value size \(h.valueWords) words, expected \(stride)") }
        let count = Int(h.count)
        let capacity = Node.capacity(blockSize: block.count, stride: stride)
        guard count >= 1, count <= capacity else {
            throw StoreError.corrupt("\(place): entry count \(count) outside 1...\(capacity)")
        }
        var keys = [Key]()
        keys.reserveCapacity(count)
        var words = [UInt64]()
        words.reserveCapacity(count * stride)
        let entryBytes = 16 + 8 * stride
        var at = Format.headerBytes
        for _ in 0..<count {
            keys.append(Key(block.u64(at), block.u64(at + 8)))
            for w in 0..<stride { words.append(block.u64(at + 16 + 8 * w)) }
            at += entryBytes
        }
        guard block.isZero(at..<block.count) else { throw StoreError.corrupt("\(place): bytes after the last entry are not zero") }
        // Stores written before 2026-12-03 can hold an internal node whose key[0], which
        // lookups ignore, is not below key[1]: the writer did not lower it when a smaller key
        // went into the first child, which later split. The tree is sound; such a key[0] is
        // read as the lowest key, so the node is ordered in memory and when written again.
        if h.level > 0 && count >= 2 && !(keys[0] < keys[1]) { keys[0] = Key.min }
        for i in 1..<max(count, 1) where !(keys[i - 1] < keys[i]) {
            throw StoreError.corrupt("\(place): keys out of order at entry \(i): \(keys[i - 1]) then \(keys[i])")
        }
        return Node(address: address, kind: expectKind, level: h.level, keys: keys, words: words)
    }
}
