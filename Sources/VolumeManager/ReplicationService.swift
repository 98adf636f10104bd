// The replication service: one `zumastor replicator` process per host, started by
// `zumastor start` (and by `define target|source`) while any volume has a target or a source.
// It listens for peers on the host's replication port (pinned TLS: a key no target or source
// of this host pins is refused at the handshake and logged), serves each accepted connection
// on a thread of its own (a push into a replica, or a pull from one of this host's volumes),
// and runs each relationship's periodic cycles on threads of their own, so a slow or
// unreachable peer delays no other. A cycle is due a period after the last success; one
// missed while the host was down runs as soon as the service is back. It re-reads the
// configurations every few seconds and at SIGHUP, and stops at SIGTERM (transfers under way stop
// there and resume at their next cycle), or by itself once no volume has a target or a source.
// Its pid file stays locked while it runs.

import CSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import Replication
import Transport
import VolumeServer

extension VolumeManager {
    /// The running service's pid (its pid file is locked while it runs).
    public func replicatorPID() -> pid_t? { lockedPID(paths.replicatorPIDFile) }

    /// Whether any volume has a target or a source.
    func hasRelationships() -> Bool {
        definedVolumes().contains { name in (try? config(name)).map { !$0.targets.isEmpty || $0.source != nil } ?? false }
    }

    /// Starts the service when some volume needs it and it does not run; else tells it to re-read.
    func ensureReplicator() throws {
        guard hasRelationships() else { return }
        if replicatorPID() != nil {
            signalReplicator()
            return
        }
        _ = try hostIdentity()
        guard try startService(["replicator"], what: "replication service", running: { replicatorPID() != nil }) else {
            throw ZumastorError.failed("the replication service did not start (see \(paths.replicatorLog))")
        }
    }

    func signalReplicator() {
        if let pid = replicatorPID() { _ = system.signal(pid, SIGHUP) }
    }

    /// Stops the service and waits for it (cycles under way stop where they are and resume later).
    func stopReplicator() throws {
        guard let pid = replicatorPID() else { return }
        try stopService(pid, what: "replication service", seconds: 30) { replicatorPID() != nil }
    }

    /// The service's life (`zumastor replicator`).
    public func runReplicator() throws {
        let service = try ServiceProcess(name: "replicator", what: "replication service", logPath: paths.replicatorLog, pidFile: paths.replicatorPIDFile)
        defer { service.release() }
        let log = service.log
        let tls: PinnedTLS
        let listener: BlockingListener
        let endpoint: Endpoint
        do {
            tls = try PinnedTLS(identity: hostIdentity())
            endpoint = try listenEndpoint()
            listener = try listen(endpoint, tls: tls, log: log)
        } catch {
            log.error("cannot start: \(error)")
            throw error
        }
        service.announce()
        log.info("replication service started: listening on \(Endpoint(host: endpoint.host, port: listener.port)), key \(tls.identity.fingerprint)")
        let acceptor = Thread { [self] in
            while let connection = listener.accept() {
                Thread { [self] in serve(connection, log: log) }.start()
            }
        }
        acceptor.start()
        let running = NIOLockedValueBox(Set<String>())
        while true {
            guard hasRelationships() else {
                log.info("no volume has a target or a source: the replication service stops")
                break
            }
            runDueCycles(running: running, log: log)
            let signal = service.nextSignal(within: 2)
            if let signal, signal == SIGTERM || signal == SIGINT {
                log.info("replication service stops (signal \(signal))")
                break
            }
            if signal == SIGHUP { log.info("configuration re-read") }
        }
        // Cycles under way stop here: each resumes at its next cycle from what its replica made durable.
        listener.close()
    }

    private func listen(_ e: Endpoint, tls: PinnedTLS, log: Logger) throws -> BlockingListener {
        let accept: @Sendable (String, KeyFingerprint?) -> Bool = { [self] address, shown in
            let known = pinnedKeys()
            guard let shown, known.contains(shown.description) else {
                log.warning("refused \(address): its key \(shown?.description ?? "(none shown)") is pinned by no target or source of this host")
                return false
            }
            return true
        }
        do {
            return try BlockingListener(host: e.host, port: e.port, tls: tls, group: ReplicationLink.group, connectionsMax: 8,
                                        idleSeconds: ReplicationLink.idleSeconds, accept: accept)
        } catch where e.host == "::" {
            return try BlockingListener(host: "0.0.0.0", port: e.port, tls: tls, group: ReplicationLink.group, connectionsMax: 8,
                                        idleSeconds: ReplicationLink.idleSeconds, accept: accept)
        }
    }

    /// The keys pinned by any target or source of this host.
    func pinnedKeys() -> Set<String> {
        var keys = Set<String>()
        for name in definedVolumes() {
            guard let c = try? config(name) else { continue }
            keys.formUnion(c.targets.map(\.key))
            if let s = c.source { keys.insert(s.key) }
        }
        return keys
    }

    /// One accepted connection: HELLO names a volume of this host and who sends; the peer
    /// must be that volume's source (to push into it) or one of its targets (to pull from it).
    func serve(_ connection: BlockingConnection, log: Logger) {
        let link = ReplicationLink(connection)
        defer { link.close() }
        let peerKey = connection.peerKey?.description ?? ""
        do {
            guard case let .hello(lo, hi, role, volume, peerVolume) = try link.receive() else {
                throw LinkError.unexpected("the first message from \(link.peer) is not HELLO")
            }
            switch role {
            case .connectorSends:
                guard let c = try? config(volume), let s = c.source, s.key == peerKey, (s.remoteName ?? volume) == peerVolume else {
                    let reason = "volume '\(volume)' of this host takes no snapshots from volume '\(peerVolume)' of this peer"
                    log.warning("refused \(link.peer) (\(peerKey)): \(reason)")
                    try? link.refuse(reason)
                    return
                }
                try link.answerHello(versionMin: lo, versionMax: hi)
                _ = try receiveCycle(volume, link: link, progress: nil)
            case .listenerSends:
                guard let c = try? config(volume),
                      let t = c.targets.first(where: { $0.key == peerKey && ($0.remoteName ?? volume) == peerVolume }) else {
                    let reason = "volume '\(volume)' of this host has no target that is volume '\(peerVolume)' of this peer"
                    log.warning("refused \(link.peer) (\(peerKey)): \(reason)")
                    try? link.refuse(reason)
                    return
                }
                try link.answerHello(versionMin: lo, versionMax: hi)
                _ = try sendCycle(volume, target: t, link: link, progress: nil)
            }
        } catch {
            log.warning("\(link.peer): \(error)")
        }
    }

    /// Starts, each on a thread of its own, the periodic cycles that are due and not running.
    private func runDueCycles(running: NIOLockedValueBox<Set<String>>, log: Logger) {
        let now = Int(time(nil))
        for name in definedVolumes() {
            // Only a volume with a periodic relationship is asked whether its server runs.
            guard let c = try? config(name), c.targets.contains(where: { $0.started && $0.period != nil })
                    || (c.source.map { $0.started && $0.period != nil } ?? false), server(name) != nil else { continue }
            for t in c.targets where t.started {
                guard let period = t.period, isDue(LinkState.load(paths.targetState(name, t)), period: period, now: now) else { continue }
                launch("\(name) > \(t.id)", running: running) { [self] in
                    do { _ = try replicate(name, toHost: "\(t.endpoint)") } catch { log.warning("\(name) to \(t.endpoint): \(error)") }
                }
            }
            if let s = c.source, s.started, let period = s.period, isDue(LinkState.load(paths.sourceState(name)), period: period, now: now) {
                launch("\(name) < source", running: running) { [self] in
                    do { _ = try pull(name) } catch { log.warning("\(name) from \(s.endpoint): \(error)") }
                }
            }
        }
    }

    /// A period after the last success; after a failure, again within 30 s (or the period, if shorter).
    private func isDue(_ s: LinkState, period: Int, now: Int) -> Bool {
        if let attempt = s.lastAttempt, s.lastError != nil, attempt >= (s.lastSuccess ?? 0) {
            return now >= attempt + min(period, 30)
        }
        return now >= (s.lastSuccess ?? 0) + period
    }

    private func launch(_ key: String, running: NIOLockedValueBox<Set<String>>, _ body: @escaping @Sendable () -> Void) {
        guard running.withLockedValue({ $0.insert(key).inserted }) else { return }
        Thread {
            body()
            running.withLockedValue { _ = $0.remove(key) }
        }.start()
    }
}

/// The pid in a pid file that its process keeps locked (nil: no such process runs).
func lockedPID(_ path: String) -> pid_t? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    if flock(fd, LOCK_SH | LOCK_NB) == 0 { return nil }
    var buffer = [UInt8](repeating: 0, count: 32)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    // The first line: the pid (a line may follow it, as in the metrics exporter's).
    return String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n").first.flatMap { pid_t($0.trimmingCharacters(in: .whitespaces)) }
}
