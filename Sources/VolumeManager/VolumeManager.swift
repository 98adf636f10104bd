// Volume lifecycle on one machine: define (initialize the store, start its server, attach the
// origin as /dev/mapper/<vol>), start and stop, forget, status. Each volume is served by its
// own `ddsnap server` process; this layer starts it, talks to it over its control socket and
// stops it with SIGTERM.

import CSupport
import Foundation
import SnapStore
import Transport
import VolumeServer

public struct VolumeDefinition: Sendable {
    public var name: String
    public var origin: String
    public var store: String
    public var initialize = false
    public var chunkSizeBytes: Int?
    public var cacheSizeBytes: UInt64?
    public var mountPoint: String?
    public var mountOptions: String?
    public var snapshotDirectory: String?
    /// Make the origin read as zeros (with `initialize`).
    public var zero = false
    public var warnFillPercent: Int?

    public init(name: String, origin: String, store: String) {
        (self.name, self.origin, self.store) = (name, origin, store)
    }
}

/// What `zumastor status` shows of a volume.
public struct VolumeStatus: Sendable {
    public var config: VolumeConfig
    /// The server, when it runs.
    public var server: ServerInfo?
    public var devices: [AttachedDevice] = []
    public var store: StoreStatus?
    public var snapshots: [VolumeSnapshot] = []
    /// Unique and shared chunks of each snapshot (with `usage`).
    public var usage: [UInt64: SnapshotUsage] = [:]
    /// The schedule agent of a running master.
    public var agentPID: pid_t?
    /// Each replication target with the state its cycles left, and the source's.
    public var targets: [(target: ReplicationTarget, state: LinkState)] = []
    public var sourceState: LinkState?
    /// The host's replication service, when it runs.
    public var replicatorPID: pid_t?

    /// Whether the store is at or above the volume's fill warning level.
    public var nearlyFull: Bool { store.map { $0.percentUsed >= config.warnFillPercent } ?? false }
}

public final class VolumeManager: Sendable {
    public let paths: ZumastorPaths
    /// The `ddsnap` executable that serves volumes.
    public let ddsnapPath: String
    /// Servers, processes and mounts.
    public let system: any VolumeSystem

    public init(paths: ZumastorPaths = .fromEnvironment(), ddsnapPath: String? = nil, system: any VolumeSystem = LinuxSystem()) {
        self.paths = paths
        self.ddsnapPath = ddsnapPath ?? VolumeManager.findDDSnap()
        self.system = system
    }

    /// ZUMASTOR_DDSNAP, else the `ddsnap` beside this executable, else the one on PATH.
    static func findDDSnap() -> String { Executables.find("ddsnap", variable: "ZUMASTOR_DDSNAP") ?? "ddsnap" }

    // MARK: Configuration

    public func definedVolumes() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: paths.volumesDirectory)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: paths.configFile($0)) }.sorted()
    }

    public func config(_ name: String) throws -> VolumeConfig {
        try DaemonConfiguration.validateVolumeName(name)
        guard FileManager.default.fileExists(atPath: paths.configFile(name)) else { throw ZumastorError.unknownVolume(name) }
        return try VolumeConfig.load(paths.configFile(name))
    }

    /// Defines a volume: checks everything first (nothing changes on a refusal), formats the
    /// store when asked, records the configuration, and starts the volume.
    @discardableResult
    public func defineVolume(_ d: VolumeDefinition) throws -> VolumeConfig {
        try DaemonConfiguration.validateVolumeName(d.name)
        try securePrivateState()
        guard !FileManager.default.fileExists(atPath: paths.configFile(d.name)) else {
            throw ZumastorError.invalid("volume '\(d.name)' is already defined (zumastor forget volume \(d.name) first)")
        }
        guard !d.zero || d.initialize else {
            throw ZumastorError.invalid("--zero applies only with --initialize (zeroing an origin would change the snapshots of an existing store)")
        }
        if let w = d.warnFillPercent, !(1...100).contains(w) {
            throw ZumastorError.invalid("the fill warning level must be 1 to 100 percent (got \(w))")
        }
        let origin = try resolveDevice(d.origin, role: "origin")
        let store = try resolveDevice(d.store, role: "snapshot store")
        try requireSeparateStorage(origin: origin, store: store)
        if d.initialize {
            let s = try Store.initialize(store: try FileDevice(path: store), origin: try FileDevice(path: origin),
                                         chunkSizeBytes: d.chunkSizeBytes ?? 16384, originPath: origin)
            try s.close()
            if d.zero { try zeroDevice(origin) }
        } else {
            let sb: Superblock
            do {
                sb = try Store.readSuperblock(try FileDevice(path: store, readOnly: true, lock: false))
            } catch StoreError.notAStore {
                throw ZumastorError.invalid("no snapshot store on \(store); use --initialize to create one (it erases what \(store) holds)")
            }
            guard (try? resolveDevice(sb.originPath, role: "origin")) == origin else {
                throw ZumastorError.invalid("\(store) is the snapshot store of \(sb.originPath), not of \(origin) (use --initialize to start over)")
            }
        }
        var c = VolumeConfig(name: d.name, origin: origin, store: store)
        c.cacheSizeBytes = d.cacheSizeBytes
        c.mountPoint = d.mountPoint
        c.mountOptions = d.mountOptions
        c.snapshotDirectory = d.snapshotDirectory
        c.warnFillPercent = d.warnFillPercent ?? 90
        try c.save(paths.configFile(d.name))
        do {
            try startVolume(d.name)
        } catch {
            try? FileManager.default.removeItem(atPath: paths.volumeDirectory(d.name))
            throw error
        }
        return c
    }

    /// Stops the volume and removes its configuration, block-file directory, default mount
    /// points and logs; the devices' data stays as it is.
    public func forgetVolume(_ name: String) throws {
        let c: VolumeConfig
        do {
            c = try config(name)
        } catch let e as ZumastorError {
            guard case .config = e else { throw e }
            // Damaged: forgotten as a volume with the default places, which is all that can
            // be known of it (the advice for a damaged file is to forget the volume).
            try stopVolume(name)
            return try removeVolumeState(VolumeConfig(name: name, origin: "", store: ""))
        }
        try stopVolume(name)
        try removeVolumeState(c)
    }

    /// What a stopped volume leaves: its configuration and state, block-file directory,
    /// default mount points and logs (refused while something is mounted there).
    private func removeVolumeState(_ c: VolumeConfig) throws {
        let name = c.name
        let snapshotDir = snapshotDirectory(c)
        if !system.mountPoints(under: snapshotDir).isEmpty || system.isMountPoint(mountPoint(c)) {
            throw ZumastorError.failed("volume '\(name)' still has mounts under \(snapshotDir) or at \(mountPoint(c)); unmount them first")
        }
        try FileManager.default.removeItem(atPath: paths.volumeDirectory(name))
        if c.mountPoint == nil { rmdir(mountPoint(c)) }
        if c.snapshotDirectory == nil {
            // Only empty directories and the rotation links are left there (nothing is mounted).
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: snapshotDir)) ?? [] {
                let path = snapshotDir + "/" + entry
                if (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil { unlink(path) } else { rmdir(path) }
            }
            rmdir(snapshotDir)
        }
        for dir in [paths.blockFiles(name), paths.logDirectory(name)] { try? FileManager.default.removeItem(atPath: dir) }
        // Stopping withdrew its exports and share; this forgets their ids and files.
        if c.export || c.samba { publishExports() }
        // The exporter serves defined volumes: with none left it stops, and its logs go (the
        // next start with a volume starts it again).
        if definedVolumes().isEmpty {
            try? stopMetricsExporter()
            let name = (paths.metricsLog as NSString).lastPathComponent
            for f in (try? FileManager.default.contentsOfDirectory(atPath: paths.log)) ?? [] where f == name || f.hasPrefix(name + ".") {
                unlink(paths.log + "/" + f)
            }
        }
    }

    /// Makes every byte of `path` read as zero: without writing where the device can
    /// (BLKZEROOUT, FALLOC_FL_ZERO_RANGE), else by writing zeros; then syncs.
    private func zeroDevice(_ path: String) throws {
        // The store just formatted still holds the origin's lock: this runs under it.
        let device = try FileDevice(path: path, lock: false)
        let size = device.sizeBytes
        if zuma_zero_range(device.descriptor, 0, size) != 0 {
            let zeros = [UInt8](repeating: 0, count: 1 << 20)
            var offset: UInt64 = 0
            while offset < size {
                let n = Int(min(UInt64(zeros.count), size - offset))
                try zeros.withUnsafeBytes { try device.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: offset) }
                offset += UInt64(n)
            }
        }
        try device.sync()
    }

    /// Refuses an origin and a store that share storage under any names (the same file, a
    /// loop device over it, a disk and its partition), storage another volume uses, a mounted
    /// filesystem, or a device that device-mapper or md builds on (an LVM physical volume:
    /// two logical volumes of it are separate storage and are accepted).
    private func requireSeparateStorage(origin: String, store: String) throws {
        var footprints: [(path: String, role: String, print: DeviceFootprint)] = []
        for (path, role) in [(origin, "origin"), (store, "snapshot store")] {
            guard let f = DeviceFootprint(path: path) else {
                throw ZumastorError.invalid("the \(role) \(path) is neither a regular file nor a block device")
            }
            if !f.holders.isEmpty {
                throw ZumastorError.invalid("the \(role) \(path) is in use by \(f.holders.map { "/dev/" + $0 }.joined(separator: ", ")) (device-mapper or md)")
            }
            if let point = f.mountPoints().first {
                throw ZumastorError.invalid("the \(role) \(path) holds the filesystem mounted at \(point); unmount it first")
            }
            footprints.append((path, role, f))
        }
        if let common = footprints[0].print.shared(with: footprints[1].print) {
            throw ZumastorError.invalid("the origin \(origin) and the snapshot store \(store) are the same storage (both use \(common))")
        }
        for other in definedVolumes() {
            guard let c = try? config(other) else { continue }
            for (otherPath, otherRole) in [(c.origin, "origin"), (c.store, "snapshot store")] {
                guard let theirs = DeviceFootprint(path: otherPath) else { continue }
                for mine in footprints {
                    if let common = mine.print.shared(with: theirs) {
                        throw ZumastorError.invalid("\(mine.path) (the \(mine.role)) is already used by volume '\(other)': its \(otherRole) \(otherPath) uses \(common)")
                    }
                }
            }
        }
    }

    private func resolveDevice(_ path: String, role: String) throws -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        guard let resolved = realpath(absolute, nil) else {
            throw ZumastorError.invalid("the \(role) \(path) doesn't exist")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    // MARK: Running

    /// The running server of a volume, if it answers.
    public func server(_ name: String) -> (any VolumeServerLink)? {
        system.server(socket: paths.serverSocket(name))
    }

    /// Starts the volume's server (if it is not running), attaches the origin, and starts a
    /// master (origin and snapshots mounted, schedule agent).
    public func startVolume(_ name: String) throws {
        try withVolumeLock(name) {
            let c = try config(name)
            if server(name) == nil {
                try system.startServer(ServerLaunch(executable: ddsnapPath, volume: name, store: c.store, socket: paths.serverSocket(name),
                                                    blockFiles: paths.blockFiles(name), log: paths.serverLog(name), cacheSizeBytes: c.cacheSizeBytes))
            }
            guard let client = server(name) else { throw ZumastorError.failed("the server of volume '\(name)' started but does not answer on \(paths.serverSocket(name))") }
            if !(try client.devices()).contains(where: { $0.tag == nil }) {
                _ = try client.attach(tag: nil, writable: true)
            }
            if c.master { try startMasterLocked(c, client) }
            if c.source != nil {
                var problems = refreshReplicaMounts(c, client)
                if let newest = try snapshots(client).last(where: { !$0.info.squashed }) {
                    problems += showReplica(c, client, newest) + hideReplicaViews(c, client, except: newest.tag)
                }
                if !c.schedule.isEmpty {
                    do { try startAgent(name) } catch { problems.append("\(error)") }
                }
                for p in problems { replicationLogger(name)?.warning("\(p)") }
            }
        }
    }

    public func mountPoint(_ c: VolumeConfig) -> String { c.mountPoint ?? paths.defaultMountPoint(c.name) }

    /// Stops the volume: a master's agent and mounts first, then the server (it detaches its
    /// devices and commits); waits until the server is gone. A server that died (kill -9, a
    /// crash) left its devices: their mounts, loop devices, block-file mount and /dev/mapper
    /// names are released here, as the next start would, so no name is left to point at a
    /// loop device the kernel hands to another disk.
    public func stopVolume(_ name: String) throws {
        try stopAgent(name)
        try withVolumeLock(name) {
            let client = server(name)
            let c: VolumeConfig
            do {
                c = try config(name)
            } catch let e as ZumastorError {
                guard case .config = e else { throw e }
                return try stopWithoutConfiguration(name, client)
            }
            if c.master { try stopMasterLocked(c, client) }
            if c.source != nil, let client {
                _ = hideReplicaViews(c, client, except: nil)
                _ = withdrawExports(c, [snapshotDirectory(c)])
                for point in system.mountPoints(under: snapshotDirectory(c)) {
                    try system.unmount(point, lazilyIfBusy: true)
                    rmdir(point)
                }
            }
            try stopServer(name, client)
        }
    }

    /// SIGTERM to the volume's server and a wait for it to go; or, with none running, what a
    /// dead one left released.
    private func stopServer(_ name: String, _ client: (any VolumeServerLink)?) throws {
        guard let client else {
            system.releaseDeadServer(volume: name, blockFiles: paths.blockFiles(name))
            return
        }
        let pid = client.serverInfo.processID
        guard system.signal(pid, SIGTERM) else { return }
        for _ in 0..<600 {
            if !system.signal(pid, 0) { return }
            usleep(100_000)
        }
        throw ZumastorError.failed("the server of volume '\(name)' (pid \(pid)) did not stop within 60 s")
    }

    /// A volume whose configuration cannot be read still stops: what is mounted from its
    /// devices (the origin, snapshots, and binds of them) is unmounted, lazily when busy, and
    /// its server stopped; its exports stay until the configuration is fixed or the volume
    /// forgotten. A damaged file never leaves a volume running that no command can stop.
    private func stopWithoutConfiguration(_ name: String, _ client: (any VolumeServerLink)?) throws {
        if let client {
            let footprints = ((try? client.devices()) ?? []).compactMap { DeviceFootprint(path: $0.loopDevice) }
            // Deepest first: binds and snapshot mounts below the origin's go before it.
            for point in Set(footprints.flatMap { $0.mountPoints() }).sorted(by: { $0.count > $1.count }) {
                try system.unmount(point, lazilyIfBusy: true)
            }
        }
        try stopServer(name, client)
    }

    /// The state (/var/lib/zumastor) and the configuration with the host's key
    /// (/etc/zumastor): directories for root alone (0700), made so where they exist already.
    func securePrivateState() throws {
        for directory in [paths.library, paths.etc] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            guard chmod(directory, 0o700) == 0 else {
                throw ZumastorError.failed("cannot make \(directory) root's alone: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// The service's start: this host's identity first (made at the first start), then every volume.
    /// Starts every volume, the replication service where one is needed, and the metrics
    /// exporter (`metrics` nil: as /etc/zumastor/metrics says; none while no volume is
    /// defined). Metrics are out of the data path: the volumes are up before the exporter
    /// starts, and stay up when it cannot.
    public func startAll(metrics: MetricsSetting? = nil) throws {
        try securePrivateState()
        _ = try hostIdentity()
        let setting = try metrics ?? configuredMetrics()
        try forEachVolume("start", startVolume)
        try ensureReplicator()
        do {
            try applyMetrics(definedVolumes().isEmpty ? .off : setting)
        } catch {
            throw ZumastorError.failed("the volumes run, but metrics are not served: \(error)")
        }
    }

    /// This host's key and certificate for replication between hosts, in /etc/zumastor; made
    /// there when it has none.
    public func hostIdentity() throws -> HostIdentity {
        do {
            return try HostIdentity.loadOrCreate(directory: paths.etc)
        } catch let e as TransportError {
            throw ZumastorError.failed("\(e)")
        }
    }

    public func stopAll() throws {
        try stopMetricsExporter()
        try stopReplicator()
        try forEachVolume("stop", stopVolume)
    }

    /// Runs `body` on every defined volume, going on past failures, which it reports together.
    private func forEachVolume(_ verb: String, _ body: (String) throws -> Void) throws {
        var failures: [String] = []
        for name in definedVolumes() {
            do { try body(name) } catch { failures.append("\(name): \(error)") }
        }
        if !failures.isEmpty { throw ZumastorError.failed("could not \(verb) " + failures.joined(separator: "; ")) }
    }

    /// What `zumastor status` shows; `usage` adds each snapshot's unique and shared space
    /// (a walk of its exceptions).
    public func status(_ name: String, usage: Bool = false) throws -> VolumeStatus {
        var s = VolumeStatus(config: try config(name))
        s.agentPID = agentPID(name)
        s.targets = s.config.targets.map { ($0, LinkState.load(paths.targetState(name, $0))) }
        if s.config.source != nil { s.sourceState = LinkState.load(paths.sourceState(name)) }
        s.replicatorPID = replicatorPID()
        if let client = server(name) {
            s.server = client.serverInfo
            s.devices = (try? client.devices()) ?? []
            s.store = try? client.status()
            s.snapshots = (try? (s.config.source != nil ? replicaSnapshots(s.config, client) : snapshots(client))) ?? []
            if usage {
                for snap in s.snapshots where !snap.info.squashed { s.usage[snap.tag] = try? client.usage(tag: snap.tag) }
            }
        }
        return s
    }
}
