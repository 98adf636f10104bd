// What storage a path really occupies, so that one disk is never taken twice under two names:
// a file is its (device, inode); a block device is its device number, its partitions, and for
// a loop device the file behind it. A device that device-mapper or md builds on is in use
// (its holders), and refused for that.
// Two paths overlap when their footprints share anything. Names, symbolic links and
// /dev/disk/by-* aliases do not matter.

import Foundation

struct DeviceFootprint {
    /// "file D:I" for regular files, "block M:N" for block devices.
    private(set) var units: Set<String> = []
    /// Device-mapper or md devices built on it (it is in use by them).
    private(set) var holders: [String] = []

    /// The footprint of `path` (symbolic links followed); nil when it does not exist.
    init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        switch st.st_mode & S_IFMT {
        case S_IFREG: units.insert("file \(st.st_dev):\(st.st_ino)")
        case S_IFBLK: addBlock(major: DeviceFootprint.major(st.st_rdev), minor: DeviceFootprint.minor(st.st_rdev), depth: 0)
        default: return nil
        }
    }

    init(block major: UInt32, _ minor: UInt32) { addBlock(major: major, minor: minor, depth: 0) }

    /// glibc's encoding of a device number.
    static func major(_ dev: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)) }
    static func minor(_ dev: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~0xff)) }

    func overlaps(_ other: DeviceFootprint) -> Bool { !units.isDisjoint(with: other.units) }

    /// A shared unit, for messages: "/dev/loop3" or "the same file".
    func shared(with other: DeviceFootprint) -> String? {
        guard let unit = units.intersection(other.units).sorted().first else { return nil }
        if unit.hasPrefix("block ") {
            let mm = unit.dropFirst(6)
            return DeviceFootprint.deviceName(String(mm)) ?? "block device \(mm)"
        }
        return "the same file"
    }

    private mutating func addBlock(major: UInt32, minor: UInt32, depth: Int) {
        let id = "\(major):\(minor)"
        guard depth < 8, units.insert("block \(id)").inserted else { return }
        let sys = "/sys/dev/block/\(id)"
        let fm = FileManager.default
        // A whole disk: its partitions are part of it.
        for entry in (try? fm.contentsOfDirectory(atPath: sys)) ?? [] where fm.fileExists(atPath: "\(sys)/\(entry)/partition") {
            if let (m, n) = DeviceFootprint.readDev("\(sys)/\(entry)/dev") { addBlock(major: m, minor: n, depth: depth + 1) }
        }
        // A loop device: the file (or device) behind it.
        if let backing = try? String(contentsOfFile: "\(sys)/loop/backing_file", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), let behind = DeviceFootprint(path: backing) {
            units.formUnion(behind.units)
        }
        // Device-mapper and md devices built on this one hold it (it is in use). Their own
        // slaves are not part of a footprint: two logical volumes of one physical volume
        // share the PV but not a block of it, and the PV itself is refused for its holders.
        if depth == 0 { holders = ((try? fm.contentsOfDirectory(atPath: "\(sys)/holders")) ?? []).sorted() }
    }

    private static func readDev(_ path: String) -> (UInt32, UInt32)? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":")
        guard parts.count == 2, let m = UInt32(parts[0]), let n = UInt32(parts[1]) else { return nil }
        return (m, n)
    }

    /// "/dev/NAME" of block device "M:N", from its uevent.
    static func deviceName(_ id: String) -> String? {
        guard let text = try? String(contentsOfFile: "/sys/dev/block/\(id)/uevent", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("DEVNAME=") { return "/dev/" + line.dropFirst(8) }
        return nil
    }

    /// Mount points of filesystems whose device overlaps this footprint.
    func mountPoints() -> [String] {
        guard let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        var out: [String] = []
        for line in info.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { continue }
            let mm = fields[2].split(separator: ":")
            guard mm.count == 2, let m = UInt32(mm[0]), let n = UInt32(mm[1]), m != 0 else { continue }
            guard units.contains("block \(m):\(n)") || DeviceFootprint(block: m, n).overlaps(self) else { continue }
            out.append(String(fields[4]).replacingOccurrences(of: "\\040", with: " "))
        }
        return out
    }
}
