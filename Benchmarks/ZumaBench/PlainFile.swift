// The reference every throughput figure is compared with: the same pattern of pwrites and
// the same number of fdatasyncs on a plain file, or the same reads.

import Foundation
import SnapStore

final class PlainFile {
    let fd: Int32
    let path: String
    init(path: String, sizeBytes: UInt64) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError.io(operation: "open", path: path, errno: errno) }
        guard ftruncate(fd, off_t(sizeBytes)) == 0 else { throw StoreError.io(operation: "truncate", path: path, errno: errno) }
    }
    deinit { close(fd) }

    func write(_ buffer: [UInt8], count: Int, at offset: UInt64) {
        let n = buffer.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) }
        precondition(n == count, "pwrite \(path): \(errno)")
    }
    func read(into buffer: inout [UInt8], count: Int, at offset: UInt64) {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        precondition(n == count, "pread \(path): \(errno)")
    }
    func sync() { precondition(fdatasync(fd) == 0) }

    /// Writes `writes` (offset, length) with `syncs` fdatasyncs spread evenly among them,
    /// timing each write as the measured side does (same instrumentation on both sides).
    func replay(_ writes: [(UInt64, Int)], syncs: Int, data: [UInt8]) -> Double {
        var latencies: [Double] = []
        latencies.reserveCapacity(writes.count)
        return timed {
            var done = 0
            for (i, w) in writes.enumerated() {
                let t = nowSeconds()
                write(data, count: w.1, at: w.0)
                latencies.append(nowSeconds() - t)
                let due = syncs * (i + 1) / max(writes.count, 1)
                while done < due { sync(); done += 1 }
            }
            while done < syncs { sync(); done += 1 }
        }
    }
}
