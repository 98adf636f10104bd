// The size a filesystem on a device says it has, read from its superblock: a shrink of the
// origin below it would cut the filesystem off (docs: zumastor resize). ext2/3/4, XFS and
// btrfs; anything else (or no filesystem) is not known.

import Foundation
import SnapStore

enum FilesystemSize {
    /// The filesystem type and the bytes it claims, or nil when no known superblock is there.
    static func claimed(on path: String) -> (type: String, bytes: UInt64)? {
        guard let device = try? FileDevice(path: path, readOnly: true, lock: false), device.sizeBytes >= 65_536 + 4096 else { return nil }
        var head = [UInt8](repeating: 0, count: 65_536 + 4096)
        guard (try? head.withUnsafeMutableBytes { try device.read(into: $0, at: 0) }) != nil else { return nil }
        return parse(head)
    }

    /// The superblocks at their places in the first 68 KiB of a device.
    static func parse(_ b: [UInt8]) -> (type: String, bytes: UInt64)? {
        func le(_ at: Int, _ n: Int) -> UInt64 { (0..<n).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
        func be(_ at: Int, _ n: Int) -> UInt64 { (0..<n).reduce(0) { $0 << 8 | UInt64(b[at + $1]) } }
        // ext2/3/4: superblock at 1024; magic 0xEF53 at +56; blocks at +4 (low) and +0x150
        // (high, with the 64bit feature 0x80 of the incompatible set at +0x60); block size
        // 1024 << (+24).
        if le(1024 + 56, 2) == 0xEF53 {
            var blocks = le(1024 + 4, 4)
            if le(1024 + 0x60, 4) & 0x80 != 0 { blocks |= le(1024 + 0x150, 4) << 32 }
            let shift = le(1024 + 24, 4)
            guard shift <= 6 else { return nil }
            return ("ext", blocks * (1024 << shift))
        }
        // XFS: "XFSB" at 0, block size at 4 and data blocks at 8, big-endian.
        if Array(b[0..<4]) == Array("XFSB".utf8) {
            return ("xfs", be(4, 4) * be(8, 8))
        }
        // btrfs: superblock at 64 KiB, magic "_BHRfS_M" at +0x40, total bytes at +0x70.
        if Array(b[(65_536 + 0x40)..<(65_536 + 0x48)]) == Array("_BHRfS_M".utf8) {
            return ("btrfs", le(65_536 + 0x70, 8))
        }
        return nil
    }
}
