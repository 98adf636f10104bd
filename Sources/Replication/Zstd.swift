// libzstd for record payloads: a record's data compressed alone, or against a reference (the
// base snapshot's bytes of the same range, which the reader holds too: zstd's "prefix", raw
// content that the frame may copy from). The record's SHA-256 covers the data, so zstd's own
// checksum is off. One context per stream, kept across its records.

import CZSTD

final class ZstdCompressor {
    private let context = ZSTD_createCCtx()

    deinit { ZSTD_freeCCtx(context) }

    /// `data` compressed at `level` (1-19), against `reference` when given; nil when that is
    /// not smaller (or libzstd failed: the record then goes uncompressed).
    func compress(_ data: UnsafeRawBufferPointer, level: Int32, reference: UnsafeRawBufferPointer? = nil) -> [UInt8]? {
        guard let context, data.count > 0 else { return nil }
        ZSTD_CCtx_reset(context, ZSTD_reset_session_and_parameters)
        guard ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)) == 0 else { return nil }
        if let reference, reference.count > 0 {
            // The window must reach from the end of the data back to the reference's start.
            let window = Int32(max(10, Int.bitWidth - (reference.count + data.count - 1).leadingZeroBitCount))
            guard ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_windowLog, window)) == 0,
                  ZSTD_isError(ZSTD_CCtx_refPrefix(context, reference.baseAddress, reference.count)) == 0 else { return nil }
        }
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(data.count))
        let n = out.withUnsafeMutableBytes { o in ZSTD_compress2(context, o.baseAddress, o.count, data.baseAddress, data.count) }
        guard ZSTD_isError(n) == 0, n < data.count else { return nil }
        out.removeSubrange(n...)
        return out
    }
}

final class ZstdDecompressor {
    private let context = ZSTD_createDCtx()

    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses `stored` into `into`, which it must fill exactly; a frame made against a
    /// reference needs the same bytes.
    func decompress(_ stored: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer, reference: UnsafeRawBufferPointer? = nil) throws {
        guard let context else { throw DeltaError.compression("zstd: no memory for a decompression context") }
        // The frame must say how much it holds, and that must be the record's size.
        let size = ZSTD_getFrameContentSize(stored.baseAddress, stored.count)
        guard size == UInt64(out.count) else {
            throw DeltaError.compression("a zstd frame of \(size >= UInt64(Int64.max) ? "unknown" : "\(size)") bytes for a record of \(out.count)")
        }
        ZSTD_DCtx_reset(context, ZSTD_reset_session_and_parameters)
        if let reference, reference.count > 0 {
            let r = ZSTD_DCtx_refPrefix(context, reference.baseAddress, reference.count)
            guard ZSTD_isError(r) == 0 else { throw DeltaError.compression("zstd: \(String(cString: ZSTD_getErrorName(r)))") }
        }
        let n = ZSTD_decompressDCtx(context, out.baseAddress, out.count, stored.baseAddress, stored.count)
        guard ZSTD_isError(n) == 0 else { throw DeltaError.compression("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        guard n == out.count else { throw DeltaError.compression("decoded \(n) of \(out.count) bytes") }
    }
}
