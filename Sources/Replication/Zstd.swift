// libzstd for record payloads: one-shot compress and decompress of a record's data (the
// record's SHA-256 covers the data, so zstd's own checksum is off).

import CZSTD

enum Zstd {
    /// `data` compressed at `level` (1-19), or nil when that is not smaller.
    static func compress(_ data: UnsafeRawBufferPointer, level: Int32) -> [UInt8]? {
        guard data.count > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(data.count))
        let n = out.withUnsafeMutableBytes { o in ZSTD_compress(o.baseAddress, o.count, data.baseAddress, data.count, level) }
        guard ZSTD_isError(n) == 0, n < data.count else { return nil }
        out.removeSubrange(n...)
        return out
    }

    /// Decompresses `stored` into `into`, which it must fill exactly.
    static func decompress(_ stored: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) throws {
        // The frame must say how much it holds, and that must be the record's size.
        let size = ZSTD_getFrameContentSize(stored.baseAddress, stored.count)
        guard size == UInt64(out.count) else {
            throw DeltaError.compression("a zstd frame of \(size >= UInt64(Int64.max) ? "unknown" : "\(size)") bytes for a record of \(out.count)")
        }
        let n = ZSTD_decompress(out.baseAddress, out.count, stored.baseAddress, stored.count)
        guard ZSTD_isError(n) == 0 else { throw DeltaError.compression("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        guard n == out.count else { throw DeltaError.compression("decoded \(n) of \(out.count) bytes") }
    }
}
