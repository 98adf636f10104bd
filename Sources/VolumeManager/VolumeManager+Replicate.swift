// `zumastor replicate VOL TARGET`: one command in one process. It takes a snapshot of the
// volume (kind `replication`), finds the newest snapshot the replica shares with the volume,
// and hands the delta between the two from the encoder straight to the replica's applier, with
// no stream bytes in between (no pipe, no checksums to compute and check again). The replica
// takes the snapshot as `ddsnap delta apply` would: checked base, origin written behind its
// last snapshot, the new snapshot created once everything is in. The target then holds the
// new snapshot as its next base; replication snapshots no target holds are deleted.

import Foundation
import Replication
import SnapStore
import VolumeServer
import VolumeInterface

/// What `zumastor replicate` did.
public struct ReplicationOutcome: Sendable {
    /// The snapshot taken and sent.
    public var snapshot: VolumeSnapshot
    /// The snapshot the delta was taken from (nil: a full copy).
    public var base: UInt64?
    public var trailer: DeltaTrailer
    /// Replication snapshots deleted because no target holds them any more.
    public var dropped: [UInt64] = []
    /// What could not be done after the replication succeeded.
    public var problems: [String] = []
}

extension VolumeManager {
    /// A local replica: the control socket of its server, or its store (and origin) opened here.
    public static func openReplica(_ path: String, origin: String? = nil) throws -> any VolumeAccess {
        do {
            return try openVolume(path, origin: origin)
        } catch StoreError.inUse {
            throw ZumastorError.failed("the replica \(path) is in use (a server runs it: give its control socket instead)")
        } catch VolumeError.invalidArgument {
            throw ZumastorError.invalid("--origin is for a replica's store, not its server's socket \(path)")
        }
    }

    /// Replicates a new snapshot of volume `name` to `replica`, which the volume's configuration
    /// knows as `target`.
    public func replicate(_ name: String, to replica: any VolumeAccess, target: String, progress: Replication.Progress? = nil) throws -> ReplicationOutcome {
        try withVolumeLock(name) {
            var c = try config(name)
            let client = try runningServer(name)
            // One listing serves the base, the new label and id, and the clean-up (the volume
            // lock keeps zumastor from changing the snapshots meanwhile).
            let existing = try snapshots(client)
            let (base, status) = try sharedBase(source: client, existing: existing, replica: replica, target: target)
            let taken = try take(&c, client, kinds: [SnapshotKind.replication], existing: existing)
            let log = masterLog(name)
            let applied: ApplyOutcome
            do {
                let encoder = DeltaEncoder(source: client, base: base, target: taken.tag)
                encoder.progress = progress
                let header = try encoder.makeHeader(status: status, snapshots: existing.map(\.info) + [taken.info])
                let applier = DeltaApplier(replica: replica)
                // The source's data is read straight into the applier's batches.
                encoder.destination = applier.dataBuffer(count:)
                applied = try applier.apply { handle in
                    try encoder.encode(header: header, events: handle)
                }
            } catch {
                // The snapshot was for this replication only.
                _ = try? client.deleteSnapshot(tag: taken.tag)
                log?.error("replication of \(name) to \(target) failed: \(error)")
                throw error
            }
            var outcome = ReplicationOutcome(snapshot: taken, base: base, trailer: applied.trailer)
            c.replicated[target] = taken.tag
            do {
                try c.save(paths.configFile(name))
            } catch {
                outcome.problems.append("cannot record that \(target) holds snapshot \(taken.tag): \(error)")
            }
            let held = Set(c.replicated.values)
            for s in existing where s.kinds == [SnapshotKind.replication] && !held.contains(s.tag) {
                do {
                    _ = try client.deleteSnapshot(tag: s.tag)
                    outcome.dropped.append(s.tag)
                } catch {
                    outcome.problems.append("cannot delete replication snapshot \(s.tag): \(error)")
                }
            }
            log?.info("replicated snapshot \(taken.tag) to \(target) \(base.map { "from snapshot \($0)" } ?? "in full"): \(applied.trailer.dataChunks) chunks of data, \(applied.trailer.zeroChunks) zero\(outcome.dropped.isEmpty ? "" : "; deleted replication snapshots \(outcome.dropped.map(String.init).joined(separator: ", "))")")
            for p in outcome.problems { log?.warning("\(p)") }
            return outcome
        }
    }

    /// The newest snapshot both hold, the same on both sides (nil: the replica is empty and
    /// takes a full copy), and the source's status when it was asked for.
    func sharedBase(source: any VolumeServerLink, existing: [VolumeSnapshot], replica: any VolumeAccess, target: String) throws -> (UInt64?, StoreStatus?) {
        let held = try replica.snapshots()
        guard !held.isEmpty else { return (nil, nil) }
        let status = try source.status()
        let (mine, theirs) = (status.volumeUUID, try replica.status().volumeUUID)
        guard mine == theirs else {
            throw ZumastorError.invalid("\(target) is a replica of volume \(theirs), not of this one (\(mine))")
        }
        let ours = Dictionary(existing.map { ($0.tag, $0.info) }, uniquingKeysWith: { a, _ in a })
        for r in held.sorted(by: { $0.tag > $1.tag }) where !r.squashed {
            if let s = ours[r.tag], !s.squashed, SnapshotIdentity(s).matches(r) { return (r.tag, status) }
        }
        throw ZumastorError.failed("\(target) shares no snapshot with this volume any more (its newest is \(held.map(\.tag).max()!)); it cannot take a delta: start a new replica")
    }
}
