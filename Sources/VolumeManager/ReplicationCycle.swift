// One replication cycle between hosts, on either side of a ReplicationLink (the life of a
// cycle and its crash windows: docs/ARCHITECTURE.md, "Replication between hosts").
//
// The receiver offers what it holds (its volume, snapshots, and where an interrupted transfer
// stopped); the sender picks the base (the newest snapshot both hold), resumes the interrupted
// transfer or takes the snapshot to send (a replica forwards its newest instead), and streams
// the delta; the receiver applies it as `ddsnap delta apply` does, making its progress durable
// every 32 MiB, and answers once the snapshot is whole and in view.

import Foundation
import Logging
import Replication
import SnapStore
import Transport
import VolumeServer

/// What one cycle did.
public struct CycleOutcome: Sendable {
    /// The snapshot the receiver now holds.
    public var snapshot: UInt64
    /// The delta's base (nil: a full copy).
    public var base: UInt64?
    /// The receiver already held the newest snapshot: nothing was sent.
    public var upToDate = false
    /// The transfer went on from this chunk, where an interrupted one stopped.
    public var resumedAt: UInt64?
    /// The target had lost every snapshot it shared with this volume: a full copy was sent.
    public var fullCopyAfterLostBase = false
    public var dataChunks: UInt64 = 0
    public var zeroChunks: UInt64 = 0
    /// Bytes on the wire (sender) and what the receiver said.
    public var bytesSent: UInt64 = 0
    public var message = ""
}

extension VolumeManager {
    /// Snapshots that hold a target's base or transfer get this priority: the store-full policy
    /// takes them only after every other snapshot (and the server logs it).
    static let holdPriority: Int8 = 100

    func targetLockPath(_ name: String, _ t: ReplicationTarget) -> String { paths.replicationDirectory(name) + "/target-\(t.id).lock" }

    func replicationLogger(_ name: String) -> Logger? {
        try? makeVolumeLogger(program: "zumastor", volume: name, path: paths.replicationLog(name), toStandardError: false)
    }

    /// Every snapshot some target of this volume still needs: its base and the transfer under
    /// way, and the bases of local replicas.
    func heldSnapshots(_ c: VolumeConfig) -> Set<UInt64> {
        var held = Set(c.replicated.values)
        for t in c.targets {
            let s = LinkState.load(paths.targetState(c.name, t))
            if let h = s.held { held.insert(h) }
            if let h = s.sending { held.insert(h) }
        }
        return held
    }

    /// Deletes the replication snapshots no target needs any more; returns them and what failed.
    func releaseReplicationSnapshots(_ c: VolumeConfig, _ client: any VolumeServerLink) -> ([UInt64], [String]) {
        let held = heldSnapshots(c)
        var dropped: [UInt64] = [], problems: [String] = []
        for s in (try? snapshots(client)) ?? [] where s.kinds == [SnapshotKind.replication] && !held.contains(s.tag) {
            do {
                _ = try client.deleteSnapshot(tag: s.tag)
                dropped.append(s.tag)
            } catch {
                problems.append("cannot delete replication snapshot \(s.tag): \(error)")
            }
        }
        return (dropped, problems)
    }

    // MARK: Sending

    /// The sender's cycle for target `t` of volume `name` (the link open, HELLO answered).
    func sendCycle(_ name: String, target t: ReplicationTarget, link: ReplicationLink, progress: Replication.Progress?) throws -> CycleOutcome {
        try withLock(targetLockPath(name, t), what: "replication of '\(name)' to \(t.endpoint)") {
            let statePath = paths.targetState(name, t)
            var state = LinkState.load(statePath)
            state.lastAttempt = Int(time(nil))
            let log = replicationLogger(name)
            do {
                let outcome = try sendLocked(name, t, link: link, state: &state, progress: progress, log: log)
                state.count(bytes: link.bytesSent)
                state.lastSuccess = Int(time(nil))
                state.lastError = nil
                state.progress = nil
                try state.save(statePath)
                log?.info("\(t.endpoint): \(outcome.message)")
                if let client = server(name), let c = try? config(name) {
                    let (dropped, problems) = try withVolumeLock(name) { releaseReplicationSnapshots(c, client) }
                    if !dropped.isEmpty { log?.info("deleted replication snapshots \(dropped.map(String.init).joined(separator: ", ")): no target needs them") }
                    for p in problems { log?.warning("\(p)") }
                }
                return outcome
            } catch {
                // The receiver hears why (when the connection still carries it).
                if !(error is LinkError) { try? link.refuse("\(error)") }
                state.noteFailure(error)
                state.count(bytes: link.bytesSent)
                state.progress = nil
                try? state.save(statePath)
                log?.error("\(t.endpoint): replication failed: \(error)")
                throw error
            }
        }
    }

    private func sendLocked(_ name: String, _ t: ReplicationTarget, link: ReplicationLink, state: inout LinkState,
                            progress: Replication.Progress?, log: Logger?) throws -> CycleOutcome {
        let statePath = paths.targetState(name, t)
        let offer: Offer
        switch try link.receive() {
        case let .offer(uuid, cs, capacity, snapshots, resume): offer = Offer(uuid: uuid, chunkSize: cs, capacity: capacity, snapshots: snapshots, resume: resume)
        case let .refuse(reason): throw LinkError.refused("\(t.endpoint) refused: \(reason)")
        case let other: throw LinkError.unexpected("\(other.name) instead of OFFER from \(t.endpoint)")
        }
        let client = try runningServer(name)
        let status = try client.status()
        var existing: [VolumeSnapshot] = []
        let plan = try withVolumeLock(name) {
                var c = try config(name)
                existing = try snapshots(client)
                let p = try planSend(&c, t, client: client, status: status, existing: existing, offer: offer, state: &state, log: log)
                if p.target.tag != state.sending && !p.upToDate {
                    try? client.setPriority(tag: p.target.tag, Self.holdPriority)
                    state.sending = p.target.tag
                }
                try state.save(statePath)
                return p
            }
        var outcome = CycleOutcome(snapshot: plan.target.tag, base: plan.base?.tag)
        outcome.fullCopyAfterLostBase = plan.lostBase
        if plan.upToDate {
            try link.send(.start(target: plan.target.tag, startChunk: 0, upToDate: true))
            _ = try awaitDone(link, t)
            outcome.upToDate = true
            outcome.message = "\(t.endpoint) already holds snapshot \(plan.target.tag): nothing to send"
            return outcome
        }
        if plan.startChunk > 0 { outcome.resumedAt = plan.startChunk }
        try link.send(.start(target: plan.target.tag, startChunk: plan.startChunk, upToDate: false))
        let encoder = DeltaEncoder(source: client, base: plan.base?.tag, target: plan.target.tag, compression: (try? Compression.parse(t.compression)) ?? .zstd(level: 3))
        encoder.startChunk = plan.startChunk
        // Version 1 receivers do not read records compressed against the base.
        encoder.compressesAgainstBase = link.version >= 2
        let tracker = progress ?? Replication.Progress(label: "replicate", interactive: false)
        if progress == nil { tracker.prints = false }
        let started = Int(time(nil))
        var lastShown = 0
        let shown = state
        tracker.observer = { chunks, _, total in
            // Status shows a transfer under way from its state file, rewritten every 2 s.
            let now = Int(time(nil))
            guard now - lastShown >= 2 else { return }
            lastShown = now
            var s = shown
            s.progress = TransferProgress(chunksDone: chunks, chunksTotal: total, bytes: link.bytesSent, started: started, updated: now, pid: getpid())
            try? s.save(statePath)
        }
        encoder.progress = tracker
        link.rateBytesPerSecond = t.rateBytesPerSecond
        let header = try encoder.makeHeader(status: status, snapshots: existing.map(\.info))
        if plan.startChunk > 0 {
            log?.info("\(t.endpoint): resuming the transfer of snapshot \(plan.target.tag) at chunk \(plan.startChunk) (\(header.chunkCount) chunks left)")
        }
        let trailer: DeltaTrailer
        do {
            trailer = try encoder.encode(header: header) { try link.sendData($0) }
            try link.send(.end)
        } catch {
            // The receiver may have stopped part way and said why before it closed.
            if case let .done(false, _, reason)? = try? link.receive() { throw LinkError.refused("\(t.endpoint) refused the stream: \(reason)") }
            throw error
        }
        let reply = try awaitDone(link, t)
        state.held = plan.target.tag
        state.sending = nil
        state.lastSnapshot = plan.target.tag
        state.lastSnapshotCreatedNanoseconds = plan.target.info.createdNanoseconds
        state.lastResumedAt = outcome.resumedAt
        if let old = plan.base?.tag, old != plan.target.tag { try? client.setPriority(tag: old, 0) }
        outcome.dataChunks = trailer.dataChunks
        outcome.zeroChunks = trailer.zeroChunks
        outcome.bytesSent = link.bytesSent
        outcome.message = "replicated snapshot \(plan.target.tag) "
            + (plan.base.map { "as changes since snapshot \($0.tag)" } ?? "in full")
            + (outcome.resumedAt.map { ", resumed at chunk \($0)" } ?? "")
            + (plan.lostBase ? " (no snapshot the target holds is here any more, the same)" : "")
            + ": \(trailer.dataChunks) chunks of data, \(trailer.zeroChunks) zero, \(link.bytesSent) bytes sent; \(reply)"
        return outcome
    }

    /// What the receiver's OFFER said.
    private struct Offer {
        var uuid: [UInt8]
        var chunkSize: UInt32
        /// The most its origin can hold (0: it grows as needed, a file).
        var capacity: UInt64
        var snapshots: [SnapshotIdentity]
        var resume: ResumePoint?
    }

    private struct SendPlan {
        var base: SnapshotIdentity?
        var target: VolumeSnapshot
        var startChunk: UInt64 = 0
        var upToDate = false
        var lostBase = false
    }

    /// Chooses the base, and resumes the interrupted transfer or picks the snapshot to send
    /// (the volume lock held).
    private func planSend(_ c: inout VolumeConfig, _ t: ReplicationTarget, client: any VolumeServerLink, status: StoreStatus,
                          existing: [VolumeSnapshot], offer: Offer,
                          state: inout LinkState, log: Logger?) throws -> SendPlan {
        guard Int(offer.chunkSize) == status.chunkSizeBytes else {
            throw ZumastorError.failed("\(t.endpoint)'s volume has chunks of \(offer.chunkSize) bytes, '\(c.name)' of \(status.chunkSizeBytes): it cannot be a replica of it (define it again with --initialize)")
        }
        let size = c.source == nil ? status.originSizeBytes : existing.last(where: { !$0.info.squashed })?.info.originSizeBytes ?? 0
        if offer.capacity > 0 && offer.capacity < size {
            throw ZumastorError.failed("\(t.endpoint)'s origin device holds \(offer.capacity) bytes, '\(c.name)' is \(size) bytes: grow the replica's origin first (nothing was sent)")
        }
        let ours = parseUUID(status.volumeUUID) ?? []
        let theirs = formatUUID(offer.uuid)
        if !offer.snapshots.isEmpty && offer.uuid != ours {
            throw ZumastorError.failed("\(t.endpoint)'s volume is a replica of volume \(theirs), not of '\(c.name)' (\(status.volumeUUID)); it shares no base with it")
        }
        let byTag = Dictionary(existing.map { ($0.tag, $0) }, uniquingKeysWith: { a, _ in a })
        let base = offer.snapshots.sorted { $0.tag > $1.tag }.first { s in
            byTag[s.tag].map { !$0.info.squashed && s.matches($0.info) } ?? false
        }
        if let sending = state.sending, sending == base?.tag {
            log?.info("\(t.endpoint) already holds snapshot \(sending): its acknowledgement was lost; it is not sent again")
            state.held = sending
            state.sending = nil
        }
        let lostBase = base == nil && !offer.snapshots.isEmpty
        if lostBase {
            log?.warning("no snapshot \(t.endpoint) holds is here any more, the same (the last it held was \(state.held.map(String.init) ?? "none")): sending a full copy")
        }
        if let r = offer.resume, r.volumeUUID == ours, r.target == state.sending, r.base == base?.tag,
           let snap = byTag[r.target], !snap.info.squashed, snap.info.createdNanoseconds == r.targetCreatedNanoseconds {
            return SendPlan(base: base, target: snap, startChunk: r.nextChunk, lostBase: lostBase)
        }
        if c.source != nil {
            // A replica forwards the newest snapshot it holds whole.
            guard let newest = existing.last(where: { !$0.info.squashed }) else {
                throw ZumastorError.failed("'\(c.name)' holds no snapshot yet to forward")
            }
            return SendPlan(base: base, target: newest, upToDate: newest.tag == base?.tag, lostBase: lostBase)
        }
        let taken = try take(&c, client, kinds: [SnapshotKind.replication], existing: existing)
        return SendPlan(base: base, target: taken, lostBase: lostBase)
    }

    private func awaitDone(_ link: ReplicationLink, _ t: ReplicationTarget) throws -> String {
        switch try link.receive() {
        case let .done(true, _, message): return message
        case let .done(false, _, reason), let .refuse(reason): throw LinkError.refused("\(t.endpoint) refused the stream: \(reason)")
        case let other: throw LinkError.unexpected("\(other.name) instead of DONE from \(t.endpoint)")
        }
    }

    // MARK: Receiving

    /// The receiver's cycle into replica `name` (the link open, HELLO answered).
    func receiveCycle(_ name: String, link: ReplicationLink, progress: Replication.Progress?) throws -> CycleOutcome {
        let log = replicationLogger(name)
        return try withVolumeLock(name) {
            let statePath = paths.sourceState(name)
            var state = LinkState.load(statePath)
            state.lastAttempt = Int(time(nil))
            do {
                let outcome = try receiveLocked(name, link: link, state: &state, progress: progress, log: log)
                state.count(bytes: link.bytesReceived)
                state.lastSuccess = Int(time(nil))
                state.lastError = nil
                try state.save(statePath)
                log?.info("from \(link.peer): \(outcome.message)")
                return outcome
            } catch {
                // What the checkpoints made durable stays, for the next cycle to resume from.
                let resume = LinkState.load(statePath).resume
                state.resume = isDamage(error) ? nil : resume
                state.noteFailure(error)
                state.count(bytes: link.bytesReceived)
                try? state.save(statePath)
                log?.error("from \(link.peer): replication failed: \(error)\(state.resume.map { "; the next cycle resumes at chunk \($0.nextChunk)" } ?? "")")
                throw error
            }
        }
    }

    /// A stream the receiver found damaged, forged or unfit: never resumed.
    private func isDamage(_ error: Error) -> Bool {
        error is DeltaError || (error as? LinkError).map { if case .malformed = $0 { return true } else { return false } } ?? false
    }

    private func receiveLocked(_ name: String, link: ReplicationLink, state: inout LinkState, progress: Replication.Progress?, log: Logger?) throws -> CycleOutcome {
        let statePath = paths.sourceState(name)
        let c = try config(name)
        let client: any VolumeServerLink
        let status: StoreStatus
        let held: [VolumeSnapshot]
        do {
            client = try runningServer(name)
            status = try client.status()
            held = try snapshots(client).filter { !$0.info.squashed }
        } catch {
            try? link.refuse("\(error)")
            throw error
        }
        let uuid = parseUUID(status.volumeUUID) ?? []
        if let r = state.resume, r.volumeUUID != uuid { state.resume = nil }
        try link.send(.offer(volumeUUID: uuid, chunkSizeBytes: UInt32(status.chunkSizeBytes), originCapacityBytes: originCapacity(c),
                             snapshots: held.reversed().prefix(LinkProtocol.offeredSnapshotsMax).map { SnapshotIdentity($0.info) }, resume: state.resume))
        let target: UInt64, startChunk: UInt64
        switch try link.receive() {
        case let .start(tag, _, true):
            try link.send(.done(ok: true, snapshot: tag, message: "'\(name)' holds snapshot \(tag) already"))
            var o = CycleOutcome(snapshot: tag)
            o.upToDate = true
            o.message = "already holds snapshot \(tag)"
            return o
        case let .start(tag, start, false): (target, startChunk) = (tag, start)
        case let .refuse(reason): throw LinkError.refused("\(link.peer) refused: \(reason)")
        case let other: throw LinkError.unexpected("\(other.name) instead of START from \(link.peer)")
        }
        let resume = state.resume
        if startChunk > 0 {
            guard let r = resume, r.target == target else {
                try? link.refuse("no interrupted transfer of snapshot \(target) to resume here")
                throw LinkError.unexpected("\(link.peer) resumes snapshot \(target) at chunk \(startChunk), which this replica did not start")
            }
        } else if resume != nil {
            // A new transfer: the origin goes back to the base before it (the applier's drift check).
            state.resume = nil
            try state.save(statePath)
        }
        let applier = DeltaApplier(replica: client)
        // Records compressed against the base read it through a second connection, while the
        // first one writes.
        applier.referenceReader = try? runningServer(name)
        applier.keepsPartial = true
        applier.resuming = startChunk > 0
        applier.progress = progress
        applier.expect = { h in
            guard h.target.tag == target else { throw DeltaError.refused("the stream is of snapshot \(h.target.tag), not \(target) as announced") }
            if startChunk > 0, let r = resume {
                guard h.target.createdNanoseconds == r.targetCreatedNanoseconds, h.base?.tag == r.base, h.volumeUUID == r.volumeUUID else {
                    throw DeltaError.refused("the resumed stream is not the one that was interrupted")
                }
            }
        }
        let checkpointState = state
        applier.checkpoint = { h, next in
            var s = checkpointState
            s.resume = ResumePoint(volumeUUID: h.volumeUUID, base: h.base?.tag, target: h.target.tag,
                                   targetCreatedNanoseconds: h.target.createdNanoseconds, nextChunk: next)
            try s.save(statePath)
        }
        if startChunk > 0 { log?.info("from \(link.peer): resuming snapshot \(target) at chunk \(startChunk)") }
        let applied: ApplyOutcome
        do {
            applied = try applier.apply { try link.readStream(into: $0) }
        } catch {
            try? link.send(.done(ok: false, snapshot: 0, message: "\(error)"))
            throw error
        }
        state.resume = nil
        state.lastSnapshot = target
        state.lastSnapshotCreatedNanoseconds = applied.header.target.createdNanoseconds
        state.lastResumedAt = startChunk > 0 ? startChunk : nil
        try state.save(statePath)
        var outcome = CycleOutcome(snapshot: target, base: applied.header.base?.tag)
        outcome.resumedAt = state.lastResumedAt
        outcome.dataChunks = applied.trailer.dataChunks
        outcome.zeroChunks = applied.trailer.zeroChunks
        var problems: [String] = []
        if let newest = try snapshots(client).first(where: { $0.tag == target }) {
            problems += showReplica(c, client, newest)
        }
        outcome.message = (applied.alreadyApplied ? "already held snapshot \(target)" : "received snapshot \(target) ")
            + (applied.alreadyApplied ? "" : (applied.header.base.map { "as changes since snapshot \($0.tag)" } ?? "in full"))
            + (outcome.resumedAt.map { ", resumed at chunk \($0)" } ?? "")
        // The new snapshot is whole and in view: the sender hears so now; the old views and
        // snapshots go after (unmounting a filesystem whose inodes are cached takes a while).
        try link.send(.done(ok: true, snapshot: target, message: outcome.message + (problems.isEmpty ? "" : "; " + problems.joined(separator: "; "))))
        problems = hideReplicaViews(c, client, except: target) + pruneReplica(c, client, keep: target)
        for p in problems { log?.warning("\(p)") }
        return outcome
    }

    /// What the replica's origin can hold: a block device's size (0: a file, which grows).
    func originCapacity(_ c: VolumeConfig) -> UInt64 {
        var info = stat()
        guard stat(c.origin, &info) == 0, (info.st_mode & S_IFMT) == S_IFBLK,
              let device = try? FileDevice(path: c.origin, readOnly: true, lock: false) else { return 0 }
        return device.sizeBytes
    }

    // MARK: The replica's view

    /// Mounts snapshot `s` read-only under the views directory and points `mount/<vol>` at it
    /// (a link replaced by rename: new opens see the new snapshot at once, open files keep the
    /// old one; `hideReplicaViews` then takes the old mounts away, lazily when busy). Returns
    /// what could not be done.
    func showReplica(_ c: VolumeConfig, _ client: any VolumeServerLink, _ s: VolumeSnapshot) -> [String] {
        let views = paths.replicaViews(c.name)
        let directory = views + "/\(s.tag)"
        let link = mountPoint(c)
        do {
            let device = try client.devices().first { $0.tag == s.tag } ?? client.attach(tag: s.tag, writable: false)
            if !system.isMountPoint(directory) {
                guard let type = system.filesystemType(device.name) else {
                    return ["snapshot \(s.tag) holds no filesystem to mount at \(link)"]
                }
                try system.mount(device.name, at: directory, options: Mounts.snapshotOptions(type), type: type)
            }
            var info = stat()
            if lstat(link, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
                guard !system.isMountPoint(link), rmdir(link) == 0 else {
                    return ["\(link) is a directory in use; the replica's newest snapshot is at \(directory)"]
                }
            }
            try FileManager.default.createDirectory(atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let temporary = link + ".new"
            unlink(temporary)
            guard symlink(directory, temporary) == 0, rename(temporary, link) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(temporary)
                return ["cannot link \(link) to \(directory): \(reason)"]
            }
        } catch {
            return ["cannot show snapshot \(s.tag) at \(link): \(error)"]
        }
        return []
    }

    /// Unmounts (lazily when busy) and detaches every view but `except`'s.
    func hideReplicaViews(_ c: VolumeConfig, _ client: any VolumeServerLink, except: UInt64?) -> [String] {
        let views = paths.replicaViews(c.name)
        var problems: [String] = []
        let kept = c.source?.mountSnap == true ? Set(retained(c.name).keys) : []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: views)) ?? [] {
            guard let tag = UInt64(entry), tag != except else { continue }
            do {
                try system.unmount(views + "/" + entry, lazilyIfBusy: true)
                rmdir(views + "/" + entry)
                // A snapshot the replica keeps mounted under its snapshot directory keeps its device.
                if !kept.contains(tag), try client.devices().contains(where: { $0.tag == tag }) { _ = try client.detach(tag: tag) }
            } catch {
                problems.append("the view of snapshot \(tag) stays: \(error)")
            }
        }
        return problems
    }

    /// Deletes the replica's snapshots but the newest, those its own targets hold and those
    /// its schedule keeps.
    func pruneReplica(_ c: VolumeConfig, _ client: any VolumeServerLink, keep newest: UInt64) -> [String] {
        let held = heldSnapshots(c).union(retained(c.name).keys)
        var problems: [String] = []
        for s in (try? snapshots(client)) ?? [] where s.tag != newest && !held.contains(s.tag) {
            do {
                if try client.devices().contains(where: { $0.tag == s.tag }) { _ = try client.detach(tag: s.tag) }
                _ = try client.deleteSnapshot(tag: s.tag)
            } catch {
                problems.append("older snapshot \(s.tag) stays for now: \(error)")
            }
        }
        return problems
    }
}
