// Downstream retention: a replica keeps snapshots on its own schedule, independently of its
// upstream (`define schedule` on the replica). When a kind is due, the replica's agent gives
// it to the newest snapshot received whole (the replica's origin may hold part of a transfer,
// so it is never snapshotted itself); the schedule's counts rotate them, and the replica's
// pruning keeps every snapshot that still has a kind. The kinds live in the replica's own
// file (replication/retained.json, tag -> kinds), not in the snapshots' names, which come from
// upstream. With `define source --mount-snap` the kept snapshots are mounted at their time
// under the snapshot directory with `KIND.N` links, as on a master.

import Foundation
import SnapStore
import VolumeServer

extension VolumeManager {
    func retainedFile(_ name: String) -> String { paths.replicationDirectory(name) + "/retained.json" }

    /// The replica's kept snapshots and their kinds.
    func retained(_ name: String) -> [UInt64: [String]] {
        guard let data = FileManager.default.contents(atPath: retainedFile(name)),
              let map = try? JSONDecoder().decode([String: [String]].self, from: data) else { return [:] }
        return Dictionary(uniqueKeysWithValues: map.compactMap { k, v in UInt64(k).map { ($0, v) } })
    }

    private func saveRetained(_ name: String, _ map: [UInt64: [String]]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(Dictionary(uniqueKeysWithValues: map.map { (String($0.key), $0.value) })), to: retainedFile(name))
    }

    /// A replica's snapshots as its rotation sees them: the upstream's directory name, the
    /// replica's own kinds.
    func replicaSnapshots(_ c: VolumeConfig, _ client: any VolumeServerLink) throws -> [VolumeSnapshot] {
        let kinds = retained(c.name)
        return try snapshots(client).map { s in
            var r = s
            r.label = s.label.map { SnapshotLabel(directory: $0.directory, kinds: kinds[s.tag] ?? []) }
            return r
        }
    }

    /// The agent's step on a replica: the newest whole snapshot takes `kinds`, the schedule
    /// rotates, mounts and links follow. Returns the snapshot given the kinds (nil: none yet).
    @discardableResult
    func retain(_ name: String, kinds: [String]) throws -> UInt64? {
        try withVolumeLock(name) {
            let c = try config(name)
            let client = try runningServer(name)
            guard let newest = try snapshots(client).last(where: { !$0.info.squashed && $0.label != nil }) else {
                masterLog(name)?.info("no snapshot received yet: the \(kinds.joined(separator: "+")) snapshot waits for one")
                return nil
            }
            var map = retained(name)
            map[newest.tag] = c.schedule.map(\.kind).filter { kinds.contains($0) || (map[newest.tag] ?? []).contains($0) }
            try saveRetained(name, map)
            let (dropped, problems) = rotateReplica(c, client)
            let log = masterLog(name)
            log?.info("kept received snapshot \(newest.tag) as \(kinds.joined(separator: "+"))\(dropped.isEmpty ? "" : "; rotation dropped \(dropped.map(String.init).joined(separator: ", "))")")
            for p in problems { log?.warning("\(p)") }
            return newest.tag
        }
    }

    /// Applies the schedule's counts to the replica's kinds, then mounts, links and prunes
    /// (the volume lock held). Returns the snapshots that lost their last kind.
    func rotateReplica(_ c: VolumeConfig, _ client: any VolumeServerLink) -> ([UInt64], [String]) {
        var map = retained(c.name)
        let present = Set(((try? snapshots(client)) ?? []).map(\.tag))
        let scheduled = Set(c.schedule.map(\.kind))
        for (tag, kinds) in map {
            let kept = kinds.filter { scheduled.contains($0) }
            map[tag] = present.contains(tag) && !kept.isEmpty ? kept : nil
        }
        let expired = Rotation.expired(map.map { (tag: $0.key, kinds: $0.value) }, schedule: c.schedule)
        for tag in expired { map[tag] = nil }
        var problems: [String] = []
        do { try saveRetained(c.name, map) } catch { problems.append("\(error)") }
        problems += refreshReplicaMounts(c, client)
        if let newest = present.max() { problems += pruneReplica(c, client, keep: newest) }
        return (expired, problems)
    }

    /// With --mount-snap: every kept snapshot mounted at its time under the snapshot
    /// directory, the others withdrawn from NFS and unmounted there, and the `KIND.N` links.
    func refreshReplicaMounts(_ c: VolumeConfig, _ client: any VolumeServerLink) -> [String] {
        guard let source = c.source, let all = try? replicaSnapshots(c, client) else { return [] }
        var problems: [String] = []
        let views = paths.replicaViews(c.name)
        for s in all {
            guard let label = s.label else { continue }
            let directory = snapshotDirectory(c) + "/" + label.directory
            do {
                if source.mountSnap && !s.kinds.isEmpty && !s.info.squashed {
                    try mountSnapshot(c, client, s)
                } else if system.isMountPoint(directory) {
                    problems += withdrawExports(c, [directory])
                    try system.unmount(directory, lazilyIfBusy: true)
                    rmdir(directory)
                    // The device stays while the replica's view shows this snapshot.
                    if !system.isMountPoint(views + "/\(s.tag)"), try client.devices().contains(where: { $0.tag == s.tag }) {
                        _ = try client.detach(tag: s.tag)
                    }
                }
            } catch {
                problems.append("snapshot \(s.tag): \(error)")
            }
        }
        do { try updateLinks(c, client) } catch { problems.append("\(error)") }
        if c.export { problems += publishExports() }
        return problems
    }
}
