// Volume lifecycle on one machine: define (initialize the store, start its server, attach the
// origin as /dev/mapper/<vol>), start and stop, forget, status. Each volume is served by its
// own `ddsnap server` process; this layer starts it, talks to it over its control socket and
// stops it with SIGTERM.

import Foundation
import SnapStore
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
    public var snapshots: [SnapshotInfo] = []
}

public final class VolumeManager: Sendable {
    public let paths: ZumastorPaths
    /// The `ddsnap` executable that serves volumes.
    public let ddsnapPath: String

    public init(paths: ZumastorPaths = .fromEnvironment(), ddsnapPath: String? = nil) {
        self.paths = paths
        self.ddsnapPath = ddsnapPath ?? VolumeManager.findDDSnap()
    }

    /// ZUMASTOR_DDSNAP, else the `ddsnap` beside this executable, else the one on PATH.
    static func findDDSnap() -> String {
        if let path = ProcessInfo.processInfo.environment["ZUMASTOR_DDSNAP"] { return path }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let sibling = (exe as NSString).deletingLastPathComponent + "/ddsnap"
            if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        }
        return "ddsnap"
    }

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
        guard !FileManager.default.fileExists(atPath: paths.configFile(d.name)) else {
            throw ZumastorError.invalid("volume '\(d.name)' is already defined (zumastor forget volume \(d.name) first)")
        }
        let origin = try resolveDevice(d.origin, role: "origin")
        let store = try resolveDevice(d.store, role: "snapshot store")
        guard origin != store else { throw ZumastorError.invalid("the origin and the snapshot store are the same device (\(origin))") }
        for other in definedVolumes() {
            guard let c = try? config(other) else { continue }
            for (path, role) in [(origin, "origin"), (store, "snapshot store")] where path == c.origin || path == c.store {
                throw ZumastorError.invalid("\(path) (the \(role)) is already used by volume '\(other)'")
            }
        }
        if d.initialize {
            let s = try Store.initialize(store: try FileDevice(path: store), origin: try FileDevice(path: origin),
                                         chunkSizeBytes: d.chunkSizeBytes ?? 16384, originPath: origin)
            try s.close()
        } else {
            let sb = try Store.readSuperblock(try FileDevice(path: store, readOnly: true, lock: false))
            guard (try? resolveDevice(sb.originPath, role: "origin")) == origin else {
                throw ZumastorError.invalid("\(store) is the snapshot store of \(sb.originPath), not of \(origin) (use --initialize to start over)")
            }
        }
        var c = VolumeConfig(name: d.name, origin: origin, store: store)
        c.cacheSizeBytes = d.cacheSizeBytes
        c.mountPoint = d.mountPoint
        c.mountOptions = d.mountOptions
        c.snapshotDirectory = d.snapshotDirectory
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
    /// point and logs; the devices' data stays as it is.
    public func forgetVolume(_ name: String) throws {
        let c = try config(name)
        try stopVolume(name)
        try FileManager.default.removeItem(atPath: paths.volumeDirectory(name))
        if c.master && c.mountPoint == nil { try? FileManager.default.removeItem(atPath: mountPoint(c)) }
        for dir in [paths.blockFiles(name), paths.logDirectory(name)] { try? FileManager.default.removeItem(atPath: dir) }
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
    public func server(_ name: String) -> ControlClient? {
        let socket = paths.serverSocket(name)
        guard FileManager.default.fileExists(atPath: socket) else { return nil }
        return try? ControlClient(socketPath: socket)
    }

    /// Starts the volume's server (if it is not running) and attaches the origin.
    public func startVolume(_ name: String) throws {
        let c = try config(name)
        if server(name) == nil {
            var arguments = ["server", c.store, "--name", name, "--socket", paths.serverSocket(name),
                             "--block-files", paths.blockFiles(name), "--log", paths.serverLog(name)]
            if let cache = c.cacheSizeBytes { arguments += ["--cache-size", String(cache)] }
            try run(ddsnapPath, arguments)
        }
        guard let client = server(name) else { throw ZumastorError.failed("the server of volume '\(name)' started but does not answer on \(paths.serverSocket(name))") }
        if !(try client.devices()).contains(where: { $0.tag == nil }) {
            _ = try client.attach(tag: nil, writable: true)
        }
        if c.master { try mountOrigin(c) }
    }

    /// Makes a volume a master: its origin is mounted now and whenever the volume starts.
    public func defineMaster(_ name: String) throws {
        var c = try config(name)
        guard server(name) != nil else {
            throw ZumastorError.failed("volume '\(name)' is not running (zumastor start volume \(name))")
        }
        c.master = true
        try mountOrigin(c)
        try c.save(paths.configFile(name))
    }

    public func mountPoint(_ c: VolumeConfig) -> String { c.mountPoint ?? paths.defaultMountPoint(c.name) }

    /// Mounts a master's origin device at its mount point (nothing to do when it is mounted).
    private func mountOrigin(_ c: VolumeConfig) throws {
        let target = mountPoint(c)
        if isMountPoint(target) { return }
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        var arguments = ["/dev/mapper/\(c.name)", target]
        if let options = c.mountOptions { arguments = ["-o", options] + arguments }
        let (status, text) = try Subprocess.run("mount", arguments)
        guard status == 0 else {
            throw ZumastorError.failed("cannot mount /dev/mapper/\(c.name) at \(target) (is there a filesystem on the origin?): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    private func unmountOrigin(_ c: VolumeConfig) throws {
        let target = mountPoint(c)
        guard isMountPoint(target) else { return }
        let (status, text) = try Subprocess.run("umount", [target])
        guard status == 0 else {
            throw ZumastorError.failed("cannot unmount \(target) (files open there? see lsof \(target)): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Stops the volume's server (it detaches its devices and commits); waits until it is gone.
    /// A master's origin is unmounted first.
    public func stopVolume(_ name: String) throws {
        let c = try config(name)
        if c.master { try unmountOrigin(c) }
        guard let client = server(name) else { return }
        let pid = client.server.processID
        guard kill(pid, SIGTERM) == 0 else { return }
        for _ in 0..<600 {
            if kill(pid, 0) != 0 { return }
            usleep(100_000)
        }
        throw ZumastorError.failed("the server of volume '\(name)' (pid \(pid)) did not stop within 60 s")
    }

    public func startAll() throws { try forEachVolume("start", startVolume) }

    public func stopAll() throws { try forEachVolume("stop", stopVolume) }

    /// Runs `body` on every defined volume, going on past failures, which it reports together.
    private func forEachVolume(_ verb: String, _ body: (String) throws -> Void) throws {
        var failures: [String] = []
        for name in definedVolumes() {
            do { try body(name) } catch { failures.append("\(name): \(error)") }
        }
        if !failures.isEmpty { throw ZumastorError.failed("could not \(verb) " + failures.joined(separator: "; ")) }
    }

    public func status(_ name: String) throws -> VolumeStatus {
        var s = VolumeStatus(config: try config(name))
        if let client = server(name) {
            s.server = client.server
            s.devices = (try? client.devices()) ?? []
            s.store = try? client.status()
            s.snapshots = (try? client.snapshots()) ?? []
        }
        return s
    }

    /// Runs a helper to completion; a non-zero exit becomes an error carrying what it printed.
    private func run(_ executable: String, _ arguments: [String]) throws {
        let (status, text) = try Subprocess.run(executable, arguments)
        guard status == 0 else {
            let reason = text.split(separator: "\n").last.map(String.init) ?? "exit \(status)"
            throw ZumastorError.failed(reason.hasPrefix("ddsnap: ") ? String(reason.dropFirst(8)) : reason)
        }
    }
}
