// liblzma (xz) for record payloads: one-shot buffer encode and decode, no integrity check of
// xz's own (the record's SHA-256 covers the data).

import CLZMA

enum LZMA {
    /// `data` compressed at `level` (0-9), or nil when that is not smaller.
    static func compress(_ data: UnsafeRawBufferPointer, level: UInt32) -> [UInt8]? {
        guard data.count > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: data.count - 1)
        var position = 0
        let rc = out.withUnsafeMutableBytes { o in
            lzma_easy_buffer_encode(level, LZMA_CHECK_NONE, nil, data.baseAddress!.assumingMemoryBound(to: UInt8.self), data.count,
                                    o.baseAddress!.assumingMemoryBound(to: UInt8.self), &position, o.count)
        }
        guard rc == LZMA_OK, position < data.count else { return nil }
        out.removeSubrange(position...)
        return out
    }

    /// Decompresses `stored` into `into`, which it must fill exactly.
    static func decompress(_ stored: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) throws {
        var memlimit: UInt64 = 256 << 20
        var inPosition = 0
        var outPosition = 0
        let rc = lzma_stream_buffer_decode(&memlimit, 0, nil, stored.baseAddress!.assumingMemoryBound(to: UInt8.self), &inPosition, stored.count,
                                           out.baseAddress!.assumingMemoryBound(to: UInt8.self), &outPosition, out.count)
        guard rc == LZMA_OK else { throw DeltaError.compression("liblzma error \(rc.rawValue)") }
        guard inPosition == stored.count, outPosition == out.count else {
            throw DeltaError.compression("decoded \(outPosition) of \(out.count) bytes from \(inPosition) of \(stored.count)")
        }
    }
}
