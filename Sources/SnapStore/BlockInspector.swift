// Decodes any metadata block on its own, for format tests and inspection tools: the block
// type comes from its header, and decoding verifies checksum, type, address and sequence.

public enum BlockInspector {
    /// What a valid metadata block is, or nil for bytes that are not one (free or stale data).
    public static func describe(_ block: [UInt8], address: UInt64, maxSequence: UInt64) -> String? {
        guard let (type, _) = try? decode(block, address: address, maxSequence: maxSequence) else { return nil }
        return type.name
    }

    /// Decodes the block and encodes it again; a stable format gives back the same bytes.
    public static func reencode(_ block: [UInt8], address: UInt64, maxSequence: UInt64) throws -> [UInt8] {
        let (_, encode) = try decode(block, address: address, maxSequence: maxSequence)
        var out = [UInt8](repeating: 0, count: block.count)
        out.withUnsafeMutableBytes { encode($0) }
        return out
    }

    private static func decode(_ block: [UInt8], address: UInt64, maxSequence: UInt64)
        throws -> (BlockType, (UnsafeMutableRawBufferPointer) -> Void) {
        try block.withUnsafeBytes { b in
            guard let type = BlockType(rawValue: b.u16(4)) else { throw StoreError.corrupt("block \(address): unknown type") }
            switch type {
            case .superblock:
                throw StoreError.corrupt("block \(address): superblocks decode with Superblock.decode")
            case .node:
                let kind = TreeKind(rawValue: b.u8(6)) ?? .exceptionsByChunk
                let header = try BlockHeader.verify(b, expect: .node, address: address, maxSequence: maxSequence)
                let node = try Node.decode(b, address: address, expectKind: kind, expectLevel: nil, maxSequence: maxSequence)
                return (type, { node.encode(into: $0, sequence: header.sequence) })
            case .bitmap, .bitmapIndex:
                let header = try BlockHeader.verify(b, expect: type, address: address, maxSequence: maxSequence)
                let count = type == .bitmap ? (block.count - Format.headerBytes) / 8 : Int(header.count)
                guard Format.headerBytes + count * 8 <= block.count else { throw StoreError.corrupt("block \(address): count \(count) too large") }
                let words = (0..<count).map { b.u64(Format.headerBytes + $0 * 8) }
                return (type, { out in
                    for i in 0..<out.count { out[i] = 0 }
                    header.encode(into: out)
                    for (i, w) in words.enumerated() { out.putU64(w, Format.headerBytes + i * 8) }
                    BlockHeader.seal(out, type: type)
                })
            }
        }
    }
}
