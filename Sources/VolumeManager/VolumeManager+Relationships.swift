// `define target|source`, `forget`, `start|stop target|source`, and `replicate` between hosts:
// the relationships recorded in a volume's configuration, and one cycle run from the command
// line (a push to a target, or a pull from the source). Every check comes before any change: a
// refused command leaves the configuration as it was.

import Foundation
import NIOCore
import NIOPosix
import Replication
import Transport
import VolumeServer

/// What `define target` records (see ReplicationTarget).
public struct TargetDefinition: Sendable {
    public var endpoint: String
    public var key: String
    public var remoteName: String?
    public var period: Int?
    public var rateBytesPerSecond: UInt64?
    public var compression = "zstd"

    public init(endpoint: String, key: String) { (self.endpoint, self.key) = (endpoint, key) }
}

/// What `define source` records (see ReplicationSource).
public struct SourceDefinition: Sendable {
    public var endpoint: String
    public var key: String
    public var remoteName: String?
    public var period: Int?
    public var mountSnap = false
    /// NFS exports of the mounted snapshots (with mountSnap).
    public var export = false
    public var nfsServer: NFSServerChoice = .auto
    public var nfsClients = ["*"]

    public init(endpoint: String, key: String) { (self.endpoint, self.key) = (endpoint, key) }
}

extension VolumeManager {
    static let periodMax = 366 * 86400

    /// Defines (or redefines) the target at `d.endpoint` of volume `name`.
    public func defineTarget(_ name: String, _ d: TargetDefinition) throws {
        let endpoint = try checkedEndpoint(d.endpoint)
        let key = try checkedKey(d.key)
        try checkRelationship(remoteName: d.remoteName, period: d.period)
        if let r = d.rateBytesPerSecond, r < 1024 {
            throw ZumastorError.invalid("--ratelimit \(r) bytes per second is too low (at least 1K)")
        }
        do { _ = try Compression.parse(d.compression) } catch { throw ZumastorError.invalid("--compress: \(error)") }
        try withVolumeLock(name) {
            var c = try config(name)
            var t = ReplicationTarget(host: endpoint.host, port: endpoint.port, key: key)
            t.remoteName = d.remoteName
            t.period = d.period
            t.rateBytesPerSecond = d.rateBytesPerSecond
            t.compression = d.compression
            if let i = c.targets.firstIndex(where: { $0.host == t.host && $0.port == t.port }) {
                t.started = c.targets[i].started
                c.targets[i] = t
            } else {
                c.targets.append(t)
            }
            try checkListener()
            try c.save(paths.configFile(name))
        }
        try ensureReplicator()
    }

    /// Defines (or redefines) the source of replica `name`.
    public func defineSource(_ name: String, _ d: SourceDefinition) throws {
        let endpoint = try checkedEndpoint(d.endpoint)
        let key = try checkedKey(d.key)
        try checkRelationship(remoteName: d.remoteName, period: d.period)
        try withVolumeLock(name) {
            var c = try config(name)
            guard !c.master else {
                throw ZumastorError.invalid("volume '\(name)' is a master (its origin is mounted and written here): a replica cannot be one (zumastor forget volume, then define it again)")
            }
            var s = ReplicationSource(host: endpoint.host, port: endpoint.port, key: key)
            s.remoteName = d.remoteName
            s.period = d.period
            s.mountSnap = d.mountSnap
            s.started = c.source?.started ?? false
            if d.export { _ = try nfsServer(d.nfsServer) }
            let exported = c.export
            c.source = s
            c.export = d.export && d.mountSnap
            c.nfsServer = d.nfsServer
            c.nfsClients = d.nfsClients
            try checkListener()
            try c.save(paths.configFile(name))
            if exported || c.export {
                let problems = publishExports()
                if !problems.isEmpty { throw ZumastorError.failed("the source is defined, but its NFS exports failed: " + problems.joined(separator: "; ")) }
            }
        }
        try ensureReplicator()
    }

    /// Forgets target `host` of volume `name`: its state goes, and the snapshots it held.
    public func forgetTarget(_ name: String, _ host: String) throws {
        try withVolumeLock(name) {
            var c = try config(name)
            let t = try target(of: c, host)
            try withLock(targetLockPath(name, t), what: "replication of '\(name)' to \(t.endpoint)") {
                c.targets.removeAll { $0 == t }
                try c.save(paths.configFile(name))
                unlink(paths.targetState(name, t))
                unlink(targetLockPath(name, t))
            }
            if let client = server(name) {
                let held = heldSnapshots(c)
                for s in (try? snapshots(client)) ?? [] where !held.contains(s.tag) && s.info.priority == Self.holdPriority {
                    try? client.setPriority(tag: s.tag, 0)
                }
                _ = releaseReplicationSnapshots(c, client)
            }
        }
        signalReplicator()
    }

    /// Forgets the source of replica `name`: periodic pulls stop, its view goes.
    public func forgetSource(_ name: String) throws {
        try withVolumeLock(name) {
            var c = try config(name)
            guard c.source != nil else { throw ZumastorError.invalid("volume '\(name)' has no source") }
            let before = c
            c.source = nil
            c.schedule = []
            try c.save(paths.configFile(name))
            try? stopAgent(name)
            unlink(paths.sourceState(name))
            unlink(retainedFile(name))
            if let client = server(name) {
                _ = hideReplicaViews(before, client, except: nil)
                for point in system.mountPoints(under: snapshotDirectory(before)) {
                    try? system.unmount(point, lazilyIfBusy: true)
                    rmdir(point)
                }
                for d in (try? client.devices()) ?? [] where !d.writable { if let tag = d.tag { _ = try? client.detach(tag: tag) } }
            }
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: mountPoint(c))) != nil { unlink(mountPoint(c)) }
        }
        signalReplicator()
    }

    /// Starts or stops the periodic cycles of target `host` (nil: of the source).
    public func setStarted(_ name: String, target host: String?, _ started: Bool) throws {
        try withVolumeLock(name) {
            var c = try config(name)
            if let host {
                let t = try target(of: c, host)
                c.targets[c.targets.firstIndex(of: t)!].started = started
            } else {
                guard c.source != nil else { throw ZumastorError.invalid("volume '\(name)' has no source (zumastor define source \(name) HOST --key FINGERPRINT)") }
                c.source!.started = started
            }
            try c.save(paths.configFile(name))
        }
        if started { try ensureReplicator() } else { signalReplicator() }
    }

    func target(of c: VolumeConfig, _ host: String) throws -> ReplicationTarget {
        let found = c.targets.filter { $0.matches(host) }
        guard let t = found.first else {
            throw ZumastorError.invalid("volume '\(c.name)' has no target \(host)\(c.targets.isEmpty ? "" : " (its targets: \(c.targets.map { "\($0.endpoint)" }.joined(separator: ", ")))")")
        }
        guard found.count == 1 else { throw ZumastorError.invalid("\(host) names several targets of '\(c.name)': give HOST:PORT") }
        return t
    }

    private func checkedEndpoint(_ text: String) throws -> Endpoint {
        let e: Endpoint
        do { e = try Endpoint(parsing: text) } catch { throw ZumastorError.invalid("\(error)") }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(e.host, nil, &hints, &found)
        guard status == 0 else {
            throw ZumastorError.invalid("unknown host '\(e.host)': \(String(cString: gai_strerror(status)))")
        }
        freeaddrinfo(found)
        return e
    }

    private func checkedKey(_ text: String) throws -> String {
        guard let k = KeyFingerprint(parsing: text) else {
            throw ZumastorError.invalid("--key '\(text)' is not a key fingerprint (SHA256: and 43 base64 characters, as 'zumastor key' prints it on the peer)")
        }
        if let mine = try? hostIdentity().fingerprint, mine == k {
            throw ZumastorError.invalid("--key \(text) is this host's own key: give the peer's (zumastor key, on the peer)")
        }
        return k.description
    }

    private func checkRelationship(remoteName: String?, period: Int?) throws {
        if let n = remoteName {
            do { try DaemonConfiguration.validateVolumeName(n) } catch { throw ZumastorError.invalid("--name: \(error)") }
        }
        if let p = period, !(1...Self.periodMax).contains(p) {
            throw ZumastorError.invalid("--period \(p) must be 1 to \(Self.periodMax) seconds")
        }
    }

    // MARK: One cycle from the command line

    /// Replicates volume `name` to its target `host` now: a new snapshot (or the one an
    /// interrupted transfer left, resumed, then a new one), returned once the target holds it.
    public func replicate(_ name: String, toHost host: String, progress: Replication.Progress? = nil) throws -> [CycleOutcome] {
        let t = try target(of: try config(name), host)
        let tls = try PinnedTLS(identity: hostIdentity())
        return try untilCurrent(open: {
            try ReplicationLink.open(t.endpoint, key: KeyFingerprint(parsing: t.key)!, tls: tls, role: .connectorSends,
                                     volume: t.remoteName ?? name, peerVolume: name)
        }, failed: { noteFailure(name, t, $0) }, cycle: { try sendCycle(name, target: t, link: $0, progress: progress) })
    }

    /// Asks the source of replica `name` for its newest snapshot now (a resumed transfer is
    /// finished first), returned once this replica holds it.
    public func pull(_ name: String, progress: Replication.Progress? = nil) throws -> [CycleOutcome] {
        guard let s = try config(name).source else {
            throw ZumastorError.invalid("volume '\(name)' has no source: give a target host (zumastor replicate \(name) HOST), or define one (zumastor define source \(name) HOST --key FINGERPRINT)")
        }
        let tls = try PinnedTLS(identity: hostIdentity())
        return try untilCurrent(open: {
            try ReplicationLink.open(s.endpoint, key: KeyFingerprint(parsing: s.key)!, tls: tls, role: .listenerSends,
                                     volume: s.remoteName ?? name, peerVolume: name)
        }, failed: { error in
            var state = LinkState.load(paths.sourceState(name))
            state.lastAttempt = Int(time(nil))
            state.noteFailure(error)
            try? withVolumeLock(name) { try state.save(paths.sourceState(name)) }
            replicationLogger(name)?.error("from \(s.endpoint): \(error)")
        }, cycle: { try receiveCycle(name, link: $0, progress: progress) })
    }

    /// Cycles on fresh connections until one sends the newest snapshot: a resumed transfer
    /// finishes the older snapshot it had begun, so another cycle follows it (at most 3).
    private func untilCurrent(open: () throws -> ReplicationLink, failed: (Error) -> Void,
                              cycle: (ReplicationLink) throws -> CycleOutcome) throws -> [CycleOutcome] {
        var outcomes: [CycleOutcome] = []
        repeat {
            let link: ReplicationLink
            do {
                link = try open()
            } catch {
                failed(error)
                throw error
            }
            defer { link.close() }
            outcomes.append(try cycle(link))
        } while outcomes.last!.resumedAt != nil && outcomes.count < 3
        return outcomes
    }

    /// Runs `zumastor replicate VOL [HOST] --wait` detached (--nowait); returns its pid.
    public func replicateInBackground(_ name: String, host: String?) throws -> pid_t {
        let c = try config(name)
        if let host { _ = try target(of: c, host) } else if c.source == nil {
            throw ZumastorError.invalid("volume '\(name)' has no source: give a target host")
        }
        guard let exe = Executables.find("zumastor", variable: "ZUMASTOR_EXE", besides: ddsnapPath) else {
            throw ZumastorError.failed("cannot find the zumastor executable to run the cycle in the background")
        }
        return try system.spawnDetached(exe, ["replicate", name] + (host.map { [$0] } ?? []) + ["--wait", "--quiet"])
    }

    /// Records a cycle that could not even begin (the target unreachable or refusing).
    func noteFailure(_ name: String, _ t: ReplicationTarget, _ error: Error) {
        try? withLock(targetLockPath(name, t), what: "replication of '\(name)' to \(t.endpoint)") {
            var state = LinkState.load(paths.targetState(name, t))
            state.lastAttempt = Int(time(nil))
            state.noteFailure(error)
            try state.save(paths.targetState(name, t))
        }
        replicationLogger(name)?.error("\(t.endpoint): \(error)")
    }

    // MARK: Where the service listens

    /// `/etc/zumastor/listen` ([ADDRESS:]PORT), else every address, port 11235.
    public func listenEndpoint() throws -> Endpoint {
        guard let text = try? String(contentsOfFile: paths.listenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else {
            return Endpoint(host: "::", port: Endpoint.defaultPort)
        }
        do {
            if let port = Int(text) { return try Endpoint(parsing: "[::]:\(port)") }
            return try Endpoint(parsing: text)
        } catch {
            throw ZumastorError.config("\(paths.listenFile): \(error)")
        }
    }

    /// Refuses when the service is not running and its port is taken by another program.
    func checkListener() throws {
        guard replicatorPID() == nil else { return }
        let e = try listenEndpoint()
        do {
            let channel = try bindListener(e)
            try? channel.close().wait()
        } catch {
            throw ZumastorError.failed("cannot listen for replication on \(e): \(error) (another program holds the port? set [ADDRESS:]PORT in \(paths.listenFile))")
        }
    }

    /// Binds `e`; the any-address of IPv6 falls back to IPv4's on a host without IPv6.
    func bindListener(_ e: Endpoint) throws -> Channel {
        let bootstrap = ServerBootstrap(group: ReplicationLink.group).serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        do {
            return try bootstrap.bind(host: e.host, port: e.port).wait()
        } catch where e.host == "::" {
            return try bootstrap.bind(host: "0.0.0.0", port: e.port).wait()
        }
    }
}
