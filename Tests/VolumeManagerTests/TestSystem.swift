// A machine for the manager's tests that needs no root: each volume server is a real
// VolumeHost on the test's files behind a real control listener in this process, reached by
// the manager through a real ControlClient; only loop devices, the mount table, the freeze and
// the schedule agent's process are kept here, as records the tests look at. Server and agent
// pids are numbers above the kernel's pid_max, so a signal the manager sends never leaves the
// table for a real process.

import Foundation
import Logging
import NIOPosix
import SnapStore
@testable import VolumeManager
@testable import VolumeServer
import VolumeInterface

final class TestSystem: VolumeSystem, @unchecked Sendable {
    let paths: ZumastorPaths
    private let lock = NSLock()
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var servers: [String: TestServer] = [:]
    private var nextPID: pid_t = 1 << 23
    /// Mount point -> what is mounted there (a device, or the bound source's device).
    private(set) var mounted: [String: String] = [:]
    /// Mount points frozen for a snapshot, in order.
    private(set) var frozen: [String] = []
    /// Paths whose users block an unmount (what `users(of:)` reports).
    var busy: [String] = []
    /// Agents running: pid -> the locked pid file's descriptor.
    private var agents: [pid_t: (volume: String, fd: Int32)] = [:]
    private(set) var signals: [(pid_t, Int32)] = []

    init(paths: ZumastorPaths) { self.paths = paths }

    deinit {
        for s in servers.values { s.stop() }
        for a in agents.values { close(a.fd) }
        try? group.syncShutdownGracefully()
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Servers and processes

    func server(socket: String) -> (any VolumeServerLink)? {
        guard locked({ servers[socket] }) != nil else { return nil }
        return try? ControlClient(socketPath: socket)
    }

    func startServer(_ launch: ServerLaunch) throws {
        try locked {
            nextPID += 1
            try makeDirectory((launch.socket as NSString).deletingLastPathComponent)
            for attempt in 0... {
                do {
                    servers[launch.socket] = try TestServer(launch: launch, processID: nextPID, group: group)
                    return
                } catch StoreError.inUse where attempt < 500 {
                    usleep(10_000)
                }
            }
        }
    }

    /// Stops the server of `volume` without a word to the manager (as a crash would).
    func crashServer(volume: String) {
        locked {
            for (socket, s) in servers where s.launch.volume == volume {
                s.stop()
                servers[socket] = nil
                exit(s)
            }
        }
    }

    /// Volumes whose dead server's leftovers the manager released.
    private(set) var released: [String] = []

    func releaseDeadServer(volume: String, blockFiles: String) { locked { released.append(volume) } }

    func spawnDetached(_ executable: String, _ arguments: [String]) throws -> pid_t {
        // Only the schedule agent is spawned: it takes its pid file's lock, as the real one does.
        guard arguments.count == 2, arguments[0] == "agent" else { throw ZumastorError.failed("unexpected spawn \(arguments)") }
        return try locked {
            nextPID += 1
            let file = paths.run + "/agents/" + arguments[1] + ".pid"
            let fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else { throw ZumastorError.failed("cannot lock \(file)") }
            let text = Array("\(nextPID)\n".utf8)
            _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            agents[nextPID] = (arguments[1], fd)
            return nextPID
        }
    }

    func signal(_ pid: pid_t, _ signal: Int32) -> Bool {
        locked {
            signals.append((pid, signal))
            if let agent = agents[pid] {
                if signal == SIGTERM || signal == SIGINT {
                    unlink(paths.run + "/agents/" + agent.volume + ".pid")
                    close(agent.fd)
                    agents[pid] = nil
                }
                return true
            }
            guard let (socket, server) = servers.first(where: { $0.value.processID == pid }) else { return false }
            if signal == SIGTERM || signal == SIGINT {
                server.stop()
                servers[socket] = nil
                exit(server)
            }
            return true
        }
    }

    /// A stopped server lets go of its store once the workers of its connections end, a moment
    /// after their clients close (a real server's exit lets go of it at once).
    private func exit(_ server: TestServer) { server.host = nil }

    func exited(_ pid: pid_t) -> Bool { locked { agents[pid] == nil } }

    var runningAgents: [String] { locked { agents.values.map(\.volume).sorted() } }

    func attachedDevices(volume: String) -> [AttachedDevice] {
        locked { servers.values.first { $0.launch.volume == volume }?.devices() ?? [] }
    }

    // MARK: Mounts

    func isMountPoint(_ path: String) -> Bool { locked { mounted[path] != nil } }

    func mountPoints(under directory: String) -> [String] {
        locked { mounted.keys.filter { $0 == directory || $0.hasPrefix(directory + "/") }.sorted { $0.count > $1.count } }
    }

    func mount(_ device: String, at directory: String, options: String?, type: String?) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try locked {
            guard mounted[directory] == nil else { throw ZumastorError.failed("\(directory) is mounted already") }
            mounted[directory] = device
        }
    }

    /// Records the binds themselves (the propagation of later mounts is the kernel's).
    func bindTree(_ source: String, at directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        locked {
            if mounted[source] == nil { mounted[source] = source }
            mounted[directory] = mounted[source]
        }
    }

    func unmount(_ directory: String, lazilyIfBusy: Bool) throws {
        try locked {
            guard mounted[directory] != nil else { return }
            if !lazilyIfBusy && busy.contains(where: { $0 == directory || $0.hasPrefix(directory + "/") }) {
                throw ZumastorError.failed("cannot unmount \(directory): busy")
            }
            mounted[directory] = nil
        }
    }

    func sameFilesystem(_ a: String, _ b: String) -> Bool { locked { mounted[a] != nil && mounted[a] == mounted[b] } }

    func filesystemType(_ device: String) -> String? { "ext4" }

    func users(of directories: [String]) -> [String] {
        locked { busy.filter { path in directories.contains { path == $0 || path.hasPrefix($0 + "/") } }.map { "pid 1 (test): \($0)" } }
    }

    func whileFrozen<T>(_ mountPoint: String?, expedite: Bool, _ body: () throws -> T) throws -> T {
        if let mountPoint, isMountPoint(mountPoint) { locked { frozen.append(mountPoint) } }
        return try body()
    }
}

/// A volume server: the real store host and control listener; attached devices are records.
final class TestServer: ServerOperations, @unchecked Sendable {
    let launch: ServerLaunch
    let processID: pid_t
    var host: VolumeHost?
    private var listener: ControlListener?
    private let lock = NSLock()
    private var attached: [UInt64?: AttachedDevice] = [:]

    init(launch: ServerLaunch, processID: pid_t, group: MultiThreadedEventLoopGroup) throws {
        self.launch = launch
        self.processID = processID
        let host = try VolumeHost(storePath: launch.store)
        self.host = host
        listener = try ControlListener(path: launch.socket, group: group, host: host, server: self,
                                       logger: Logger(label: "test-server", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    func stop() {
        listener?.close()
        listener = nil
        unlink(launch.socket)
        try? host?.close()
    }

    var info: ServerInfo {
        ServerInfo(volume: launch.volume, storePath: launch.store, originPath: (try? host?.status().originPath) ?? "",
                   processID: processID, blockFileDirectory: launch.blockFiles, nbdSocket: nil, nbdListen: nil)
    }

    func attach(tag: UInt64?, writable: Bool) throws -> AttachedDevice {
        lock.lock()
        defer { lock.unlock() }
        if let d = attached[tag] { return d }
        if let tag { guard try host?.snapshot(tag: tag) != nil else { throw StoreError.snapshotMissing(tag) } }
        let d = AttachedDevice(tag: tag, loopDevice: "/dev/loop-test\(attached.count)",
                               name: "/dev/mapper/\(launch.volume)" + (tag.map { "(\($0))" } ?? ""), writable: writable, directIO: true)
        attached[tag] = d
        return d
    }

    func detach(tag: UInt64?) throws -> AttachedDevice {
        lock.lock()
        defer { lock.unlock() }
        guard let d = attached.removeValue(forKey: tag) else { throw VolumeError.invalidArgument("not attached") }
        return d
    }

    func devices() -> [AttachedDevice] {
        lock.lock()
        defer { lock.unlock() }
        return attached.values.sorted { ($0.tag ?? 0, $0.tag == nil ? 0 : 1) < ($1.tag ?? 0, $1.tag == nil ? 0 : 1) }
    }

    func originResized() {}
}
