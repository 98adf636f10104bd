// Revert and resize, as the seed guide does them: with the master stopped (the origin not
// mounted) while the volume runs, so /dev/mapper/<vol> stays there for e2fsck and resize2fs.

import Foundation
import SnapStore
import VolumeServer

extension VolumeManager {
    /// Makes the origin equal to snapshot `tag`; returns the number of chunks rewritten. The
    /// origin must not be mounted (zumastor stop master VOL).
    @discardableResult
    public func revert(_ name: String, to tag: UInt64) throws -> Int {
        try withVolumeLock(name) {
            let c = try config(name)
            let client = try runningServer(name)
            try requireUnmounted(c, verb: "reverting")
            guard let snap = try client.snapshot(tag: tag) else {
                throw StoreError.snapshotMissing(tag)
            }
            guard !snap.squashed else { throw StoreError.snapshotSquashed(tag) }
            // The origin device is detached while its contents change under it, then attached again.
            let attached = try client.devices().contains { $0.tag == nil }
            if attached { _ = try client.detach(tag: nil) }
            defer { if attached { _ = try? client.attach(tag: nil, writable: true) } }
            return try client.revert(to: tag)
        }
    }

    /// Resizes the origin (the master stopped, the device grown first for a larger size) and/or
    /// the snapshot store. Shrinking the origin copies out what snapshots still need first;
    /// it never gives up a snapshot for that (the store refuses, naming the shortfall), and
    /// it refuses to cut into the filesystem on the origin unless `force`.
    public func resize(_ name: String, origin: UInt64?, store: UInt64?, force: Bool = false) throws -> StoreStatus {
        try withVolumeLock(name) {
            let c = try config(name)
            let client = try runningServer(name)
            guard origin != nil || store != nil else {
                throw ZumastorError.invalid("give --origin SIZE and/or --snapshot SIZE")
            }
            var status = try client.status()
            let resizeOrigin = origin.map { $0 != status.originSizeBytes } ?? false
            // Every check before the first change: the origin's device must be large enough.
            if resizeOrigin, let origin {
                try requireUnmounted(c, verb: "resizing the origin")
                let device = try FileDevice(path: c.origin, readOnly: true, lock: false)
                guard origin <= device.sizeBytes else {
                    throw ZumastorError.invalid("the origin \(c.origin) is \(formatCount(device.sizeBytes)) bytes; grow it before resizing the volume to \(formatCount(origin)) bytes")
                }
                if origin < status.originSizeBytes, !force, let fs = FilesystemSize.claimed(on: c.origin), origin < fs.bytes {
                    throw ZumastorError.invalid("the \(fs.type) filesystem on volume '\(name)' is \(formatCount(fs.bytes)) bytes: shrink it first (\(fs.type == "ext" ? "resize2fs" : fs.type == "btrfs" ? "btrfs filesystem resize" : "xfs cannot shrink; copy the data to a smaller filesystem"), or pass --force to cut it off at \(formatCount(origin)) bytes")
                }
            }
            if let store { status = try client.resizeStore(to: store) }
            if resizeOrigin, let origin { status = try client.resizeOrigin(to: origin) }
            return status
        }
    }

    private func requireUnmounted(_ c: VolumeConfig, verb: String) throws {
        let point = mountPoint(c)
        if system.isMountPoint(point) {
            throw ZumastorError.invalid("volume '\(c.name)' is mounted at \(point); stop the services using it and the master first (zumastor stop master \(c.name)) before \(verb)")
        }
    }
}
