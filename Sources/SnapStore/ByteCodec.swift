// Explicit little-endian field encode/decode on raw buffers. Never reinterpret a Swift
// struct's memory as disk bytes: every on-disk field goes through these.

import CSupport

extension UnsafeMutableRawBufferPointer {
    @inline(__always) public func putU64(_ v: UInt64, _ at: Int) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self) }
    @inline(__always) public func putU32(_ v: UInt32, _ at: Int) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt32.self) }
    @inline(__always) public func putU16(_ v: UInt16, _ at: Int) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt16.self) }
    @inline(__always) public func putU8(_ v: UInt8, _ at: Int) { storeBytes(of: v, toByteOffset: at, as: UInt8.self) }
}

extension UnsafeRawBufferPointer {
    @inline(__always) public func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
    @inline(__always) public func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    @inline(__always) public func u16(_ at: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    @inline(__always) public func u8(_ at: Int) -> UInt8 { self[at] }
    /// True when every byte in `range` is zero (reserved fields).
    public func isZero(_ range: Range<Int>) -> Bool {
        for i in range where self[i] != 0 { return false }
        return true
    }
}

/// CRC32C of `bytes`, seeded with `seed` (a per-block-type salt).
public func crc32c(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
    zuma_crc32c(seed, bytes.baseAddress, bytes.count)
}

public func crc32c(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { crc32c($0, seed: seed) }
}

/// CRC32C of A followed by B, from `a` = crc32c(A) and `b` = crc32c(B) (B started from 0)
/// and B's length: `crc32c(B, seed: a)` without reading B again.
public func crc32cCombine(_ a: UInt32, _ b: UInt32, lengthB: UInt64) -> UInt32 {
    zuma_crc32c_combine(a, b, lengthB)
}
