// What volume management asks of the machine: volume servers (started as processes, reached
// over their control sockets), the schedule agent's process, mounts and the filesystem freeze.
// The manager does all of it through one `VolumeSystem`, so its logic (rotation, links, holds,
// replication state, master start and stop) runs in tests against real stores and a real
// control server without root: only the loop devices and the mount table are the test's own.

import CSupport
import Foundation
import VolumeServer
import VolumeInterface

/// A running volume server as the manager uses it: the store, and the devices it attached.
public protocol VolumeServerLink: VolumeAccess {
    var serverInfo: ServerInfo { get }
    func devices() throws -> [AttachedDevice]
    func attach(tag: UInt64?, writable: Bool) throws -> AttachedDevice
    func detach(tag: UInt64?) throws -> AttachedDevice
    /// The server's metrics in Prometheus' text format (nil: it keeps none).
    func metricsText() throws -> String?
}

extension ControlClient: VolumeServerLink {
    public var serverInfo: ServerInfo { server }
}

/// How to start the server of one volume (`ddsnap server ...`).
public struct ServerLaunch: Sendable, Equatable {
    public var executable: String
    public var volume: String
    public var store: String
    public var socket: String
    public var blockFiles: String
    public var log: String
    public var cacheSizeBytes: UInt64?

    /// The command line of `ddsnap server`.
    public var arguments: [String] {
        var a = ["server", store, "--name", volume, "--socket", socket, "--block-files", blockFiles, "--log", log]
        if let cacheSizeBytes { a += ["--cache-size", String(cacheSizeBytes)] }
        return a
    }
}

public protocol VolumeSystem: Sendable {
    // Servers and processes.
    /// The server answering on `socket`, nil when none does.
    func server(socket: String) -> (any VolumeServerLink)?
    /// Starts a server and returns once it serves (or throws why it could not).
    func startServer(_ launch: ServerLaunch) throws
    /// Releases what a server that died left (its loop devices, block-file mount, names).
    func releaseDeadServer(volume: String, blockFiles: String)
    /// Starts a detached process; returns its pid.
    func spawnDetached(_ executable: String, _ arguments: [String]) throws -> pid_t
    /// Sends `signal` to `pid` (0: only asks whether it lives); false when there is no such process.
    func signal(_ pid: pid_t, _ signal: Int32) -> Bool
    /// Whether `pid`, a child of this process, has exited (and reaps it).
    func exited(_ pid: pid_t) -> Bool

    // Mounts.
    func isMountPoint(_ path: String) -> Bool
    /// Mount points at or below `directory`, deepest first.
    func mountPoints(under directory: String) -> [String]
    func mount(_ device: String, at directory: String, options: String?, type: String?) throws
    /// Binds `source` with what is mounted below it, now and later, at `directory`.
    func bindTree(_ source: String, at directory: String) throws
    /// Unmounts `directory` if something is mounted there.
    func unmount(_ directory: String, lazilyIfBusy: Bool) throws
    func sameFilesystem(_ a: String, _ b: String) -> Bool
    /// The filesystem type on a device, nil when none is recognized.
    func filesystemType(_ device: String) -> String?
    /// Processes that use a path at or below one of `directories`, as "pid N (command): PATH".
    func users(of directories: [String]) -> [String]
    /// Runs `body` with the filesystem mounted at `mountPoint` frozen (nil or not mounted: as is).
    func whileFrozen<T>(_ mountPoint: String?, expedite: Bool, _ body: () throws -> T) throws -> T
}

extension VolumeSystem {
    func unmount(_ directory: String) throws { try unmount(directory, lazilyIfBusy: false) }
    func mount(_ device: String, at directory: String, options: String?) throws {
        try mount(device, at: directory, options: options, type: nil)
    }
}

/// This machine: `ddsnap server` processes, mount(8) and umount(8), FIFREEZE.
public struct LinuxSystem: VolumeSystem {
    public init() {}

    public func server(socket: String) -> (any VolumeServerLink)? {
        guard FileManager.default.fileExists(atPath: socket) else { return nil }
        return try? ControlClient(socketPath: socket)
    }

    public func startServer(_ launch: ServerLaunch) throws {
        let (status, text) = try Subprocess.run(launch.executable, launch.arguments)
        guard status == 0 else {
            let reason = text.split(separator: "\n").last.map(String.init) ?? "exit \(status)"
            throw ZumastorError.failed(reason.hasPrefix("ddsnap: ") ? String(reason.dropFirst(8)) : reason)
        }
    }

    public func releaseDeadServer(volume: String, blockFiles: String) {
        DeadServerLeftovers.release(volume: volume, blockFileDirectory: blockFiles)
    }

    public func spawnDetached(_ executable: String, _ arguments: [String]) throws -> pid_t {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let pid = argv.withUnsafeBufferPointer { zuma_spawn_detached(executable, $0.baseAddress, null) }
        guard pid > 0 else { throw ZumastorError.failed("cannot start \(executable): \(String(cString: strerror(errno)))") }
        return pid
    }

    public func signal(_ pid: pid_t, _ signal: Int32) -> Bool { kill(pid, signal) == 0 }

    public func exited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == pid
    }

    public func isMountPoint(_ path: String) -> Bool { VolumeServer.isMountPoint(path) }
    public func mountPoints(under directory: String) -> [String] { Mounts.mountPoints(under: directory) }
    public func mount(_ device: String, at directory: String, options: String?, type: String?) throws {
        try Mounts.mount(device, at: directory, options: options, type: type)
    }
    public func bindTree(_ source: String, at directory: String) throws { try Mounts.bindTree(source, at: directory) }
    public func unmount(_ directory: String, lazilyIfBusy: Bool) throws { try Mounts.unmount(directory, lazilyIfBusy: lazilyIfBusy) }
    public func sameFilesystem(_ a: String, _ b: String) -> Bool { Mounts.sameFilesystem(a, b) }
    public func filesystemType(_ device: String) -> String? { Mounts.filesystemType(device) }
    public func users(of directories: [String]) -> [String] { Mounts.users(of: directories) }
    public func whileFrozen<T>(_ mountPoint: String?, expedite: Bool, _ body: () throws -> T) throws -> T {
        try Mounts.whileFrozen(mountPoint, expedite: expedite, body)
    }
}
