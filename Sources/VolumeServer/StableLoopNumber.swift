// The loop device number a volume's device asks for first, so that the device keeps its number
// (major:minor) across restarts of the server and of the host. NFS file handles carry it
// (nfs-ganesha with fsid_device, the only way it tells snapshots of one filesystem apart, since
// they share its UUID): a handle a client holds stays valid after `zumastor stop` and `start`.
// Numbers from 65,536 up: 2,048 per volume (its name hashed into 256 groups), the origin first,
// then the snapshots by id. A number another device holds falls back to any free one.

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
}
