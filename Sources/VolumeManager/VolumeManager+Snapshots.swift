// `zumastor snapshot`: freeze, take, thaw, mount, link, rotate. Every snapshot zumastor takes
// records its directory and kinds in its store name (SnapshotLabel), so the store alone says
// what is mounted where; nothing else has to be kept in step with it.

import Foundation
import Logging
import SnapStore
import VolumeServer

/// A snapshot of a volume, with what zumastor recorded of it.
public struct VolumeSnapshot: Sendable {
    public var info: SnapshotInfo
    /// nil for snapshots taken with `ddsnap` directly: zumastor neither mounts nor rotates them.
    public var label: SnapshotLabel?

    public var tag: UInt64 { info.tag }
    public var kinds: [String] { label?.kinds ?? [] }
}

/// What `zumastor snapshot` did.
public struct SnapshotOutcome: Sendable {
    public var snapshot: VolumeSnapshot
    /// Where it is mounted (nil: not mounted).
    public var mountDirectory: String?
    /// Tags the rotation dropped.
    public var dropped: [UInt64] = []
    /// What went wrong after the snapshot was taken (mount, rotation); the snapshot stands.
    public var problems: [String] = []
    /// What the administrator should know (the store filling up).
    public var warnings: [String] = []
}

extension VolumeManager {
    public func snapshotDirectory(_ c: VolumeConfig) -> String {
        c.snapshotDirectory ?? paths.defaultSnapshotDirectory(c.name)
    }

    /// Where snapshot `s` is mounted when the volume's master runs (nil: it is not mounted).
    /// On a replica with `--mount-snap`, the snapshots it keeps on its own schedule (their
    /// kinds from `replicaSnapshots`).
    public func mountDirectory(_ c: VolumeConfig, _ s: VolumeSnapshot) -> String? {
        guard let label = s.label, !s.info.squashed, !label.kinds.contains(SnapshotKind.replication) else { return nil }
        if let source = c.source {
            guard source.mountSnap, !label.kinds.isEmpty else { return nil }
        } else {
            guard c.master, c.snapmount else { return nil }
        }
        return snapshotDirectory(c) + "/" + label.directory
    }

    /// The volume's log of snapshots and schedules: /var/log/zumastor/<vol>/master.log.
    func masterLog(_ name: String) -> Logger? {
        try? makeVolumeLogger(program: "zumastor", volume: name, path: paths.logDirectory(name) + "/master.log", toStandardError: false)
    }

    /// The volume's server, or an error telling how to start it.
    func runningServer(_ name: String) throws -> any VolumeServerLink {
        guard let client = server(name) else {
            throw ZumastorError.failed("volume '\(name)' is not running: start the service (zumastor start, or systemctl start zumastor) or the volume (zumastor start volume \(name))")
        }
        return client
    }

    func snapshots(_ client: any VolumeServerLink) throws -> [VolumeSnapshot] {
        try client.snapshots().map { VolumeSnapshot(info: $0, label: SnapshotLabel(name: $0.name)) }.sorted { $0.tag < $1.tag }
    }

    /// Takes a snapshot of `kinds` (none: a manual snapshot, kept until deleted) and returns
    /// what was done. Throws, with nothing changed, when the snapshot could not be taken.
    public func snapshot(_ name: String, kinds: [String] = []) throws -> SnapshotOutcome {
        try withVolumeLock(name) {
            var c = try config(name)
            for kind in kinds {
                try SnapshotKind.validate(kind)
                guard c.keep(kind) != nil else {
                    throw ZumastorError.invalid("volume '\(name)' has no '\(kind)' snapshots in its schedule (zumastor define schedule \(name) --\(SnapshotKind.automatic.contains(kind) ? "\(kind) N" : "custom \(kind),N"))")
                }
            }
            let client = try runningServer(name)
            let released = releaseSquashed(c, client)
            let taken = try take(&c, client, kinds: kinds)
            var outcome = SnapshotOutcome(snapshot: taken)
            outcome.problems = released
            if c.master && c.snapmount {
                do {
                    try mountSnapshot(c, client, outcome.snapshot)
                    outcome.mountDirectory = mountDirectory(c, outcome.snapshot)
                } catch {
                    outcome.problems.append("snapshot \(taken.tag) is not mounted: \(error)")
                }
            }
            let (dropped, problems) = rotate(c, client)
            outcome.dropped = dropped
            outcome.problems += problems
            do { try updateLinks(c, client) } catch { outcome.problems.append("cannot update the links in \(snapshotDirectory(c)): \(error)") }
            if c.export { outcome.problems += publishExports() }
            let log = masterLog(name)
            log?.info("took \(kinds.isEmpty ? "manual" : kinds.joined(separator: "+")) snapshot \(taken.tag)\(outcome.mountDirectory.map { " at \($0)" } ?? "")\(outcome.dropped.isEmpty ? "" : "; rotation dropped \(outcome.dropped.map(String.init).joined(separator: ", "))")")
            for p in outcome.problems { log?.warning("\(p)") }
            if let warning = fillWarning(c, client) {
                log?.warning("\(warning)")
                outcome.warnings.append(warning)
            }
            return outcome
        }
    }

    /// The warning a store at or above the volume's fill level deserves (nil: below it).
    func fillWarning(_ c: VolumeConfig, _ client: any VolumeServerLink) -> String? {
        guard let status = try? client.status(), status.percentUsed >= c.warnFillPercent else { return nil }
        return "the snapshot store of '\(c.name)' is \(status.percentUsed)% full (warning level \(c.warnFillPercent)%); when it fills, unused snapshots are deleted oldest first and mounted ones squashed"
    }

    /// The fill warnings of every running volume (what every zumastor command repeats on
    /// standard error once a store has passed its level).
    public func fillWarnings() -> [String] {
        definedVolumes().compactMap { name in
            guard let c = try? config(name), let client = server(name) else { return nil }
            return fillWarning(c, client)
        }
    }

    /// Squashed snapshots (given up when the store filled; their reads fail) are withdrawn
    /// from NFS, unmounted (lazily when busy: nothing can be read there any more), detached,
    /// their directories removed, and the links updated. Returns what could not be done.
    @discardableResult
    func releaseSquashed(_ c: VolumeConfig, _ client: any VolumeServerLink) -> [String] {
        guard let all = try? snapshots(client) else { return [] }
        var problems: [String] = []
        var released: [UInt64] = []
        for s in all where s.info.squashed {
            let directory = s.label.map { snapshotDirectory(c) + "/" + $0.directory }
            let attached = (try? client.devices())?.contains { $0.tag == s.tag } ?? false
            guard attached || directory.map({ system.isMountPoint($0) || FileManager.default.fileExists(atPath: $0) }) ?? false else { continue }
            do {
                if let directory {
                    if system.isMountPoint(directory) { problems += withdrawExports(c, [directory]) }
                    try system.unmount(directory, lazilyIfBusy: true)
                    rmdir(directory)
                }
                if attached { _ = try client.detach(tag: s.tag) }
                released.append(s.tag)
            } catch {
                problems.append("squashed snapshot \(s.tag) could not be released: \(error)")
            }
        }
        if !released.isEmpty {
            masterLog(c.name)?.warning("the store filled: snapshot(s) \(released.map(String.init).joined(separator: ", ")) were squashed; unmounted and their links removed (delete them with zumastor delete)")
            do { try updateLinks(c, client) } catch { problems.append("\(error)") }
        }
        return problems
    }

    /// Labels, freezes, creates and thaws: the snapshot of `kinds` (the volume lock held).
    /// Throws, with nothing changed but the next id, when the snapshot could not be taken.
    func take(_ c: inout VolumeConfig, _ client: any VolumeServerLink, kinds: [String], existing known: [VolumeSnapshot]? = nil) throws -> VolumeSnapshot {
        let existing = try known ?? snapshots(client)
        let label = SnapshotLabel(directory: SnapshotLabel.directory(at: Int(time(nil)), avoiding: Set(existing.compactMap { $0.label?.directory }),
                                                                     after: c.lastSnapshotDirectory),
                                  kinds: kinds)
        guard label.name.utf8.count <= 63 else {
            throw ZumastorError.invalid("the kinds \(kinds.joined(separator: ",")) do not fit in a snapshot name (63 bytes)")
        }
        // Ids advance by two and never go back, even past snapshots deleted since.
        var tag = c.nextSnapshotTag
        if let highest = existing.map(\.tag).max(), tag <= highest { tag = (highest + 2) & ~1 }
        c.nextSnapshotTag = tag + 2
        c.lastSnapshotDirectory = label.directory
        try c.save(paths.configFile(c.name))
        let info = try system.whileFrozen(c.master ? mountPoint(c) : nil, expedite: c.expediteFreeze) {
            try client.createSnapshot(tag: tag, name: label.name, priority: 0)
        }
        return VolumeSnapshot(info: info, label: label)
    }

    /// Deletes snapshot `tag` (manual or not): unmounted, detached, deleted; the links follow.
    /// Returns the number of store chunks freed.
    public func deleteSnapshot(_ name: String, tag: UInt64) throws -> UInt64 {
        try withVolumeLock(name) {
            let c = try config(name)
            let client = try runningServer(name)
            guard let s = try snapshots(client).first(where: { $0.tag == tag }) else { throw StoreError.snapshotMissing(tag) }
            try unmountSnapshot(c, client, s, removeDirectory: true)
            let freed = try client.deleteSnapshot(tag: tag)
            try updateLinks(c, client)
            masterLog(name)?.info("deleted snapshot \(tag)")
            return freed
        }
    }

    /// Deletes the snapshots the schedule drops (unmounting them first). Returns the dropped
    /// tags and what could not be done; a snapshot that stays busy goes at a later rotation.
    func rotate(_ c: VolumeConfig, _ client: any VolumeServerLink) -> ([UInt64], [String]) {
        guard let all = try? snapshots(client) else { return ([], ["cannot list the snapshots of \(c.name)"]) }
        let managed = all.filter { $0.label != nil }
        let expired = Rotation.expired(managed.map { ($0.tag, $0.kinds) }, schedule: c.schedule)
        var dropped: [UInt64] = []
        var problems: [String] = []
        for s in managed where expired.contains(s.tag) {
            do {
                try unmountSnapshot(c, client, s, removeDirectory: true)
                _ = try client.deleteSnapshot(tag: s.tag)
                dropped.append(s.tag)
            } catch {
                problems.append("snapshot \(s.tag) is due to go but stays: \(error)")
            }
        }
        return (dropped, problems)
    }

    /// Attaches snapshot `s` read-only and mounts it at its directory.
    func mountSnapshot(_ c: VolumeConfig, _ client: any VolumeServerLink, _ s: VolumeSnapshot) throws {
        guard let directory = mountDirectory(c, s) else { return }
        let devices = try client.devices()
        let device = try devices.first { $0.tag == s.tag } ?? client.attach(tag: s.tag, writable: false)
        if !system.isMountPoint(directory) {
            let type = system.filesystemType(device.name)
            try system.mount(device.name, at: directory, options: Mounts.snapshotOptions(type), type: type)
        }
    }

    /// Unmounts snapshot `s` (withdrawn from NFS clients first) and detaches its device.
    func unmountSnapshot(_ c: VolumeConfig, _ client: any VolumeServerLink, _ s: VolumeSnapshot, removeDirectory: Bool) throws {
        if let label = s.label {
            let directory = snapshotDirectory(c) + "/" + label.directory
            // A withdrawal that failed matters only if the server still holds the snapshot.
            let withdrawal = c.export && system.isMountPoint(directory) ? withdrawExports(c, [directory]) : []
            do {
                try system.unmount(directory)
            } catch where !withdrawal.isEmpty {
                throw ZumastorError.failed("\(error) (withdrawing it from NFS clients failed: \(withdrawal.joined(separator: "; ")))")
            }
            if removeDirectory { rmdir(directory) }
        }
        if try client.devices().contains(where: { $0.tag == s.tag }) { _ = try client.detach(tag: s.tag) }
    }

    /// Makes the `<kind>.N` links in the snapshot directory name the snapshots of each kind,
    /// newest first; stale links go. Each link is replaced atomically.
    func updateLinks(_ c: VolumeConfig, _ client: any VolumeServerLink) throws {
        guard (c.master && c.snapmount) || c.source?.mountSnap == true else { return }
        let dir = snapshotDirectory(c)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // A squashed snapshot has nothing to read: no KIND.N names it.
        let all = c.source != nil ? try replicaSnapshots(c, client) : try snapshots(client)
        let managed = all.filter { !$0.info.squashed }.compactMap { s in s.label.map { (tag: s.tag, label: $0) } }
        let wanted = Rotation.links(managed)
        for entry in try FileManager.default.contentsOfDirectory(atPath: dir) where Rotation.isLinkName(entry) {
            let path = dir + "/" + entry
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) else { continue }
            if wanted[entry] != target { unlink(path) }
        }
        for (link, target) in wanted {
            let path = dir + "/" + link
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == target { continue }
            let temporary = dir + "/." + link + ".new"
            unlink(temporary)
            guard symlink(target, temporary) == 0, rename(temporary, path) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(temporary)
                throw ZumastorError.failed("cannot link \(path) -> \(target): \(reason)")
            }
        }
    }
}
