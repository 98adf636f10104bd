// What a `ddsnap server` killed with -9 leaves behind: its block-file FUSE mount, dead
// ("Transport endpoint is not connected"); loop devices still bound to its block files; and
// the /dev/mapper names of the volume, which point at those loop devices. The kernel hands a
// detached loop device out again, so a name left behind would one day name another disk:
// names go with the devices. Both the next server and `zumastor stop` clear them.

import CSupport
import Foundation

public enum DeadServerLeftovers {
    /// Releases everything a dead server of `volume` left; returns one line per thing done.
    /// Call it only when no server of the volume runs.
    @discardableResult
    public static func release(volume: String, blockFileDirectory: String, deviceNameDirectory: String = "/dev/mapper") -> [String] {
        var done: [String] = []
        let prefix = blockFileDirectory + "/"
        let sys = "/sys/block"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: sys)) ?? [] where entry.hasPrefix("loop") {
            guard let backing = try? String(contentsOfFile: "\(sys)/\(entry)/loop/backing_file", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines), backing.hasPrefix(prefix) else { continue }
            let loop = "/dev/\(entry)"
            zuma_loop_detach(loop)
            done.append("detached \(loop), left bound to \(backing) by an earlier server")
        }
        StableLoopNumber.removeUnbound()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: deviceNameDirectory)) ?? []
        where entry == volume || (entry.hasPrefix(volume + "(") && entry.hasSuffix(")")) {
            let path = deviceNameDirectory + "/" + entry
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
                unlink(path)
                done.append("removed \(path) (it named \(target))")
            }
        }
        if isMountPoint(blockFileDirectory) {
            umount2(blockFileDirectory, Int32(MNT_DETACH))
            done.append("removed the block-file mount an earlier server left at \(blockFileDirectory)")
        }
        return done
    }
}
