// The loop device number a volume's device asks for first, so that the device keeps its number
// (major:minor) across restarts of the server and of the host. NFS file handles carry it
// (nfs-ganesha with fsid_device, the only way it tells snapshots of one filesystem apart, since
// they share its UUID): a handle a client holds stays valid after `zumastor stop` and `start`.
// Numbers from 65,536 up: 2,048 per volume (its name hashed into 256 groups), the origin first,
// then the snapshots by id. A number another device holds falls back to any free one. Devices
// of the range that no file is bound to are removed again (a detach that waited for the last
// user, a server that died, leave them).

import CSupport
import Foundation

enum StableLoopNumber {
    static let first = 65_536
    static let groups: UInt32 = 256
    static let perVolume = 2_048

    static func preferred(volume: String, tag: UInt64?) -> Int32 {
        var hash: UInt32 = 2_166_136_261
        for byte in volume.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let slot = tag.map { 1 + Int(($0 / 2) % UInt64(perVolume - 1)) } ?? 0
        return Int32(first + Int(hash % groups) * perVolume + slot)
    }

    /// Whether `device` (/dev/loopN) is in the range this server makes devices in.
    static func isOurs(_ device: String) -> Bool {
        guard device.hasPrefix("/dev/loop"), let n = Int(device.dropFirst("/dev/loop".count)) else { return false }
        return n >= first && n < first + Int(groups) * perVolume
    }

    /// Removes the loop devices of the range that no file is bound to (sysfs shows `loop/` only
    /// for a bound one). One another server has just made and opens is busy and stays; one it
    /// has made and not yet opened makes its attach take another number.
    static func removeUnbound() {
        let sys = "/sys/block"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: sys)) ?? [] where isOurs("/dev/" + entry) {
            if !FileManager.default.fileExists(atPath: "\(sys)/\(entry)/loop") { zuma_loop_remove("/dev/" + entry) }
        }
    }
}
