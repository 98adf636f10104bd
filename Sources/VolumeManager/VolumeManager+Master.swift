// The master role: the origin mounted, its snapshots mounted with their links, the schedule
// agent running. `start master` / `stop master` bring that up and down while the volume
// (server and /dev/mapper/<vol>) keeps running, as the seed's resize and revert steps need.

import Foundation
import SnapStore
import VolumeServer

/// The options of `zumastor define master`.
public struct MasterOptions: Sendable, Equatable {
    public var snapmount = true
    public var export = false
    public var nfsServer: NFSServerChoice = .auto
    public var nfsClients = ["*"]
    public var samba = false
    /// The Samba share's name (nil: the volume's).
    public var sambaShare: String?
    public var dotsnapshot = false
    public var expediteFreeze = true

    public init() {}

    /// The client list of `--nfs-clients` (comma-separated *, names, addresses, networks).
    public static func parseNFSClients(_ text: String) throws -> [String] { try NFSExportText.parseClients(text) }
}

extension VolumeManager {
    /// Makes a running volume a master with `options`, and starts the master.
    public func defineMaster(_ name: String, options: MasterOptions = MasterOptions()) throws {
        try withVolumeLock(name) {
            var c = try config(name)
            if let source = c.source {
                throw ZumastorError.invalid("volume '\(name)' is a replica of \(source.endpoint): its origin takes only what its source sends (zumastor forget source \(name) first)")
            }
            let client = try runningServer(name)
            try checkExportOptions(name, options)
            if c.master { try stopMasterLocked(c, client) }
            c.master = true
            c.snapmount = options.snapmount
            // The origin is exported and shared with or without snapshot mounts.
            c.export = options.export
            c.nfsServer = options.nfsServer
            c.nfsClients = options.nfsClients
            c.samba = options.samba
            c.sambaShare = options.sambaShare
            c.dotsnapshot = options.dotsnapshot && options.snapmount
            c.expediteFreeze = options.expediteFreeze
            try mountOrigin(c)
            try c.save(paths.configFile(name))
            try startMasterLocked(c, client)
        }
    }

    /// Sets the rotation of a master volume: how many snapshots of each kind are kept. The
    /// running schedule agent picks it up at once.
    /// Sets the schedule and rotates at once; returns the snapshots the rotation dropped.
    @discardableResult
    public func defineSchedule(_ name: String, _ schedule: [ScheduleEntry]) throws -> [UInt64] {
        try withVolumeLock(name) {
            var c = try config(name)
            guard c.master || c.source != nil else {
                throw ZumastorError.invalid("volume '\(name)' is neither a master (zumastor define master \(name)) nor a replica (zumastor define source): only those keep scheduled snapshots")
            }
            var seen = Set<String>()
            for e in schedule {
                try SnapshotKind.validate(e.kind)
                guard e.kind != SnapshotKind.replication else {
                    throw ZumastorError.invalid("'\(SnapshotKind.replication)' is the kind of the snapshots zumastor replicate takes; choose another name")
                }
                guard (1...ScheduleEntry.keepMax).contains(e.keep) else {
                    throw ZumastorError.invalid("keep 1 to \(ScheduleEntry.keepMax) '\(e.kind)' snapshots (got \(e.keep))")
                }
                guard seen.insert(e.kind).inserted else { throw ZumastorError.invalid("'\(e.kind)' is given twice") }
            }
            c.schedule = schedule
            try c.save(paths.configFile(name))
            if let pid = agentPID(name) { _ = system.signal(pid, SIGHUP) }
            // A lower count takes effect now, not at the next snapshot.
            guard let client = server(name) else { return [] }
            if c.source != nil {
                // A replica: its agent keeps received snapshots on this schedule.
                if !schedule.isEmpty { try startAgent(name) }
                let (dropped, problems) = rotateReplica(c, client)
                if !problems.isEmpty { throw ZumastorError.failed("the schedule is set, but " + problems.joined(separator: "; ")) }
                return dropped
            }
            let (dropped, problems) = rotate(c, client)
            if !dropped.isEmpty { try? updateLinks(c, client) }
            if !problems.isEmpty { throw ZumastorError.failed("the schedule is set, but " + problems.joined(separator: "; ")) }
            return dropped
        }
    }

    /// Mounts the origin, the snapshots and their links, and starts the schedule agent.
    public func startMaster(_ name: String) throws {
        let c = try config(name)
        guard c.master else { throw ZumastorError.invalid("volume '\(name)' is not a master (zumastor define master \(name))") }
        try withVolumeLock(name) { try startMasterLocked(c, try runningServer(name)) }
    }

    /// Stops the schedule agent and unmounts the snapshots and the origin; the volume runs on.
    public func stopMaster(_ name: String) throws {
        let c = try config(name)
        guard c.master else { throw ZumastorError.invalid("volume '\(name)' is not a master") }
        try stopAgent(name)
        try withVolumeLock(name) { try stopMasterLocked(c, server(name)) }
    }

    /// Moves the origin's mount point and/or changes its options (nil keeps either); a running
    /// master is unmounted and mounted again.
    public func remount(_ name: String, mountPoint newPoint: String?, options: String?) throws {
        try withVolumeLock(name) {
            var c = try config(name)
            var changed = c
            if let newPoint {
                guard newPoint.hasPrefix("/") else { throw ZumastorError.invalid("the mount point must be an absolute path (got \(newPoint))") }
                changed.mountPoint = newPoint == paths.defaultMountPoint(name) ? nil : newPoint
            }
            if let options { changed.mountOptions = options.isEmpty ? nil : options }
            let running = c.master && system.isMountPoint(mountPoint(c))
            if running {
                try stopMasterLocked(c, server(name))
                do {
                    try mountOrigin(changed)
                } catch {
                    try? mountOrigin(c)
                    try? startMasterLocked(c, try runningServer(name))
                    throw error
                }
            }
            let oldPoint = mountPoint(c)
            c = changed
            try c.save(paths.configFile(name))
            if running {
                if oldPoint != mountPoint(c) && oldPoint == paths.defaultMountPoint(name) { rmdir(oldPoint) }
                try startMasterLocked(c, try runningServer(name))
            }
        }
    }

    func startMasterLocked(_ c: VolumeConfig, _ client: any VolumeServerLink) throws {
        try mountOrigin(c)
        var problems: [String] = []
        if c.dotsnapshot {
            do { try mountDotSnapshot(c) } catch { problems.append("\(error)") }
        }
        if c.snapmount {
            problems += releaseSquashed(c, client)
            for s in try snapshots(client) where mountDirectory(c, s) != nil {
                do { try mountSnapshot(c, client, s) } catch { problems.append("snapshot \(s.tag): \(error)") }
            }
            do { try updateLinks(c, client) } catch { problems.append("\(error)") }
        }
        if c.export || c.samba { problems += publishExports() }
        do { try startAgent(c.name) } catch { problems.append("\(error)") }
        if !problems.isEmpty { throw ZumastorError.failed("master \(c.name) started with problems: " + problems.joined(separator: "; ")) }
    }

    /// Withdraws the volume's NFS exports and Samba share, unmounts everything below the
    /// snapshot directory, then the origin, and detaches the snapshot devices. Works without
    /// a server too (after a crash).
    /// With no server (it died), the devices under the mounts are dead: what will not
    /// unmount is detached lazily, since nothing can be written through it any more.
    /// With a server, nothing is unmounted while a process still uses the origin or a
    /// snapshot (the refusal names it), and a failure part way mounts again what was
    /// unmounted (and restarts the schedule agent), so a refused stop changes nothing.
    func stopMasterLocked(_ c: VolumeConfig, _ client: (any VolumeServerLink)?) throws {
        let origin = mountPoint(c)
        let snapshotMounts = system.mountPoints(under: snapshotDirectory(c))
        // NFS and Samba servers hold what they serve open, and would count as its users. A
        // withdrawal that failed matters only if one still does (the stop then fails below).
        let withdrawal = withdrawExports(c, [origin, snapshotDirectory(c)])
        do {
            if client != nil {
                let users = system.users(of: (system.isMountPoint(origin) ? [origin] : []) + snapshotMounts)
                if !users.isEmpty {
                    throw ZumastorError.failed("volume '\(c.name)' is in use, nothing was stopped: \(users.joined(separator: "; ")) (see lsof \(origin))")
                }
            }
            // Deepest first, the snapshot directory's own bind (--dotsnapshot) last; each
            // snapshot's copy below .snapshot goes with it.
            for point in snapshotMounts { try system.unmount(point, lazilyIfBusy: client == nil) }
            for point in system.mountPoints(under: origin + "/.snapshot") { try system.unmount(point, lazilyIfBusy: client == nil) }
            if let client {
                for d in try client.devices() { if let tag = d.tag, !d.writable { _ = try client.detach(tag: tag) } }
            }
            try system.unmount(origin, lazilyIfBusy: client == nil)
        } catch {
            if let client { try? startMasterLocked(c, client) }
            if !withdrawal.isEmpty { throw ZumastorError.failed("\(error) (withdrawing it from NFS and Samba clients failed: \(withdrawal.joined(separator: "; ")))") }
            throw error
        }
    }

    /// `<origin mount>/.snapshot` (--dotsnapshot): the snapshot directory bound there with the
    /// snapshots mounted below it, now and later, so that it is a directory of the origin's
    /// for Samba clients too. Where nfs-ganesha exports the origin it is a symbolic link
    /// instead: nfs-ganesha claims what is mounted below an export, and then cannot withdraw
    /// a rotated snapshot's export (its reload never ends). One form replaces the other.
    func mountDotSnapshot(_ c: VolumeConfig) throws {
        let point = mountPoint(c) + "/.snapshot"
        let target = snapshotDirectory(c)
        let bound = !(c.export && (try? nfsServer(c.nfsServer)) != .kernel)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        if let existing = try? FileManager.default.destinationOfSymbolicLink(atPath: point) {
            guard existing == target else { throw ZumastorError.failed("\(point) is a link to \(existing); move it away for --dotsnapshot") }
            if !bound { return }
            unlink(point)
        } else if system.isMountPoint(point) {
            if bound { return }
            for m in system.mountPoints(under: point) { try system.unmount(m) }
        }
        var directory: ObjCBool = false
        if FileManager.default.fileExists(atPath: point, isDirectory: &directory) {
            guard directory.boolValue, (try? FileManager.default.contentsOfDirectory(atPath: point))?.isEmpty == true else {
                throw ZumastorError.failed("\(point) exists and is not an empty directory; move it away for --dotsnapshot")
            }
            if !bound { rmdir(point) }
        } else if bound && mkdir(point, 0o755) != 0 {
            throw ZumastorError.failed("cannot make \(point): \(String(cString: strerror(errno)))")
        }
        if bound {
            try system.bindTree(target, at: point)
        } else if symlink(target, point) != 0 {
            throw ZumastorError.failed("cannot link \(point): \(String(cString: strerror(errno)))")
        }
    }

    /// Mounts a master's origin device at its mount point (nothing to do when it is mounted).
    func mountOrigin(_ c: VolumeConfig) throws {
        let target = mountPoint(c)
        if system.isMountPoint(target) { return }
        do {
            try system.mount("/dev/mapper/\(c.name)", at: target, options: c.mountOptions)
        } catch {
            throw ZumastorError.failed("\(error) (is there a filesystem on /dev/mapper/\(c.name)?)")
        }
    }

    func unmountOrigin(_ c: VolumeConfig) throws { try system.unmount(mountPoint(c)) }
}
