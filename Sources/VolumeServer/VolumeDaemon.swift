// `ddsnap server`: one process per volume that owns its devices. It holds the store (the
// exclusive lock is taken when the store is opened), serves the control socket, the FUSE
// block files and NBD, attaches loop devices on request, and on SIGTERM or SIGINT stops
// taking work, finishes what is in flight, detaches, unmounts, commits and exits 0.
// After `kill -9` the next start recovers the store to its last commit and clears the
// loop devices and names the dead process left behind.

import CSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SnapStore
import VolumeInterface

public struct DaemonConfiguration: Sendable {
    public var volume: String
    public var storePath: String
    public var originPath: String?
    public var socketPath: String
    public var nbdSocketPath: String?
    public var nbdListen: (host: String, port: Int)?
    /// TLS files for NBD on `nbdListen` (NBDTLSConfiguration): TLS is then required there.
    /// Without them `nbdListen` must be a loopback address.
    public var nbdTLSDirectory: String?
    /// Serve Prometheus metrics over HTTP here (a loopback address).
    public var metricsListen: (host: String, port: Int)?
    public var blockFileDirectory: String
    public var logPath: String?
    public var logToStandardError = true
    public var cacheSizeBytes: Int?
    /// Directory of the device names (`/dev/mapper`).
    public var deviceNameDirectory = "/dev/mapper"

    public init(volume: String, storePath: String, socketPath: String, blockFileDirectory: String) {
        self.volume = volume
        self.storePath = storePath
        self.socketPath = socketPath
        self.blockFileDirectory = blockFileDirectory
    }

    public static func defaultSocketPath(volume: String) -> String { "/var/run/zumastor/servers/\(volume)" }
    public static func defaultBlockFileDirectory(volume: String) -> String { "/var/run/zumastor/devices/\(volume)" }
    public static func defaultLogPath(volume: String) -> String { "/var/log/zumastor/\(volume)/server.log" }

    /// NBD over TCP without TLS only where no other host reaches it; TLS files only with TCP.
    public static func checkNBDListen(_ host: String?, tlsDirectory: String?) throws {
        guard let host else {
            if tlsDirectory != nil { throw VolumeError.invalidArgument("NBD TLS files are given but no NBD TCP address (--nbd-listen) to use them on") }
            return
        }
        if tlsDirectory == nil && !isLoopbackAddress(host) {
            throw VolumeError.invalidArgument("NBD on \(host) would let anyone who reaches it read and write the volume: give --nbd-tls DIR (ca-cert.pem, server-cert.pem, server-key.pem; clients then need a certificate of that authority), or listen on 127.0.0.1")
        }
    }

    /// A volume name usable in paths, device names and NBD export names.
    public static func validateVolumeName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ allowed.contains($0) }), name.first != ".", name.first != "-" else {
            throw VolumeError.invalidArgument("volume name '\(name)' must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
        }
    }
}

public final class VolumeDaemon: ServerOperations, @unchecked Sendable {
    public let configuration: DaemonConfiguration
    public let logger: Logger
    let host: VolumeHost
    private let group: MultiThreadedEventLoopGroup
    private let pool: NIOThreadPool
    private var blockFiles: BlockFiles?
    private var control: ControlListener?
    private var nbd: NBDListener?
    private var metricsEndpoint: MetricsEndpoint?
    public let metrics: VolumeMetrics
    private let attachLock = NIOLock()
    private var attached: [UInt64?: AttachedDevice] = [:]

    /// Opens the store and starts every service; throws (having undone what it started) when one fails.
    public init(_ configuration: DaemonConfiguration) throws {
        self.configuration = configuration
        try DaemonConfiguration.validateVolumeName(configuration.volume)
        let logger = try makeVolumeLogger(program: "ddsnap", volume: configuration.volume, path: configuration.logPath,
                                          toStandardError: configuration.logToStandardError)
        self.logger = logger
        let metrics = VolumeMetrics(volume: configuration.volume)
        self.metrics = metrics
        do {
            host = try VolumeHost(storePath: configuration.storePath, originPath: configuration.originPath,
                                  cacheSizeBytes: configuration.cacheSizeBytes, metrics: metrics) { event in logger.notice("\(event)") }
        } catch {
            logger.error("cannot open the store: \(error)")
            throw error
        }
        zuma_keep_large_buffers()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        // One pool thread per core: store calls mostly hit the page cache, and more threads than
        // cores only add switching between them.
        pool = NIOThreadPool(numberOfThreads: max(2, System.coreCount))
        pool.start()
        do {
            try startServices()
        } catch {
            logger.error("cannot start: \(error)")
            stopServices()
            throw error
        }
    }

    private func startServices() throws {
        // What earlier servers left unbound in the stable loop range (a detach that waited for
        // its last user) goes before this one takes its numbers.
        StableLoopNumber.removeUnbound()
        let c = configuration
        clearLeftovers()
        for dir in [(c.socketPath as NSString).deletingLastPathComponent] + (c.nbdSocketPath.map { [($0 as NSString).deletingLastPathComponent] } ?? []) {
            try makeDirectory(dir)
        }
        blockFiles = try BlockFiles(directory: c.blockFileDirectory, volume: c.volume, host: host, logger: logger)
        try DaemonConfiguration.checkNBDListen(c.nbdListen?.host, tlsDirectory: c.nbdTLSDirectory)
        let tls = try c.nbdTLSDirectory.map { try NBDTLSConfiguration(directory: $0) }
        let nbdContext = NBDContext(volume: c.volume, host: host, pool: pool, logger: logger)
        nbd = try NBDListener(unixPath: c.nbdSocketPath, tcp: c.nbdListen, tls: tls, group: group, context: nbdContext)
        control = try ControlListener(path: c.socketPath, group: group, host: host, server: self, logger: logger)
        if let m = c.metricsListen {
            let host = self.host, metrics = self.metrics
            metricsEndpoint = try MetricsEndpoint(host: m.host, port: m.port, group: group, logger: logger) {
                metrics.render(try? host.status())
            }
        }
        logger.info("serving store \(c.storePath): control \(c.socketPath), block files \(c.blockFileDirectory)\(c.nbdSocketPath.map { ", NBD \($0)" } ?? "")\(nbdTCPDescription)\(metricsEndpoint.map { ", metrics http://\($0.address)/metrics" } ?? "")")
    }

    private var nbdTCPDescription: String {
        guard let listen = configuration.nbdListen else { return "" }
        return ", NBD tcp \(listen.host):\(nbd?.tcpPort ?? listen.port)\(configuration.nbdTLSDirectory.map { " (TLS required, files in \($0))" } ?? " (plain, loopback)")"
    }

    public var info: ServerInfo {
        ServerInfo(volume: configuration.volume, storePath: configuration.storePath,
                   originPath: (try? host.status().originPath) ?? "", processID: getpid(),
                   blockFileDirectory: configuration.blockFileDirectory, nbdSocket: configuration.nbdSocketPath,
                   nbdListen: configuration.nbdListen.map { "\($0.host):\(nbd?.tcpPort ?? $0.port)" },
                   features: [ServerInfo.featureWriteExtents, ServerInfo.featureMetrics],
                   protocolVersion: ControlProtocol.version, release: ControlProtocol.release)
    }

    /// Blocks until SIGTERM or SIGINT, then shuts down. Call `VolumeDaemon.blockSignals()`
    /// first thing in the process, before any thread starts.
    public func runUntilSignalled() {
        var set = VolumeDaemon.stopSignals()
        var signal: Int32 = 0
        while sigwait(&set, &signal) != 0 {}
        logger.info("signal \(signal): shutting down")
        shutdown()
    }

    private static func stopSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        return set
    }

    /// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later, so
    /// that only `runUntilSignalled` receives them; ignores SIGPIPE.
    public static func blockSignals() {
        var set = stopSignals()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Stops taking work, finishes in-flight requests, detaches, unmounts and commits.
    public func shutdown() {
        stopServices()
        do {
            try host.close()
            logger.info("store committed and closed; exiting")
        } catch {
            logger.error("final commit failed: \(error)")
        }
    }

    private func stopServices() {
        control?.close()
        control = nil
        metricsEndpoint?.close()
        metricsEndpoint = nil
        nbd?.close()
        nbd = nil
        for device in devices() { _ = try? detach(tag: device.tag) }
        StableLoopNumber.removeUnbound()
        let stillOpen = host.openDevices()
        if !stillOpen.isEmpty {
            logger.warning("\(stillOpen.joined(separator: ", ")) still open (mounted, or an NBD client); their I/O fails from now on")
        }
        blockFiles?.stop()
        blockFiles = nil
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
        unlink(configuration.socketPath)
        if let p = configuration.nbdSocketPath { unlink(p) }
    }

    // MARK: Loop devices and their names

    public func attach(tag: UInt64?, writable: Bool) throws -> AttachedDevice {
        guard let blockFiles else { throw VolumeError.unreachable("the server is shutting down") }
        if let tag {
            guard let snap = try host.snapshot(tag: tag) else { throw StoreError.snapshotMissing(tag) }
            if snap.squashed { throw StoreError.snapshotSquashed(tag) }
        }
        return try attachLock.withLock {
            if let existing = attached[tag] {
                guard existing.writable == (tag == nil || writable) else {
                    throw VolumeError.inUse("\(describe(tag)) is already attached \(existing.writable ? "read-write" : "read-only") as \(existing.loopDevice); detach it first")
                }
                return existing
            }
            let readOnly = tag != nil && !writable
            if let tag, writable { host.setWritable(true, snapshot: tag) }
            var path = [CChar](repeating: 0, count: 64)
            let preferred = StableLoopNumber.preferred(volume: configuration.volume, tag: tag)
            guard zuma_loop_attach(blockFiles.path(tag: tag), readOnly ? 1 : 0, 1, preferred, &path, path.count) == 0 else {
                throw VolumeError.system("cannot attach a loop device to \(blockFiles.path(tag: tag)): \(describeErrno(errno))")
            }
            let loop = stringFromC(path)
            let name = deviceName(tag)
            do {
                try makeDirectory(configuration.deviceNameDirectory)
                removeName(name, ifPointingAt: nil)
                guard symlink(loop, name) == 0 else {
                    throw VolumeError.system("cannot name \(loop) as \(name): \(describeErrno(errno))")
                }
            } catch {
                zuma_loop_detach(loop)
                throw error
            }
            let device = AttachedDevice(tag: tag, loopDevice: loop, name: name, writable: !readOnly,
                                        directIO: zuma_loop_direct_io(loop) == 1)
            attached[tag] = device
            logger.info("attached \(describe(tag)) as \(loop) (\(name)\(device.directIO ? ", direct I/O" : ""))")
            return device
        }
    }

    public func detach(tag: UInt64?) throws -> AttachedDevice {
        try attachLock.withLock {
            guard let device = attached[tag] else { throw VolumeError.invalidArgument("\(describe(tag)) is not attached") }
            // The loop device holds the block file open once; NBD clients may hold it too.
            let opensBefore = host.openCount(snapshot: tag)
            if zuma_loop_detach(device.loopDevice) != 0 && errno != ENXIO {
                throw VolumeError.system("cannot detach \(device.loopDevice): \(describeErrno(errno))")
            }
            removeName(device.name, ifPointingAt: device.loopDevice)
            attached[tag] = nil
            // The kernel releases the block file shortly after the detach returns; until then
            // the file counts as open (delete and revert refuse). Wait for it, unless the device
            // stays bound until its last user (a mount elsewhere) closes it.
            if zuma_loop_detach_pending(device.loopDevice) == 1 {
                logger.info("detached \(describe(tag)) from \(device.loopDevice); it goes when its last user closes it")
                return device
            }
            if StableLoopNumber.isOurs(device.loopDevice) { zuma_loop_remove(device.loopDevice) }
            for _ in 0..<200 where opensBefore > 0 && host.openCount(snapshot: tag) >= opensBefore { usleep(50_000) }
            logger.info("detached \(describe(tag)) from \(device.loopDevice)")
            return device
        }
    }

    public func originResized() {
        attachLock.withLock {
            guard let device = attached[nil] else { return }
            if zuma_loop_set_capacity(device.loopDevice) != 0 {
                logger.error("cannot update the size of \(device.loopDevice): \(describeErrno(errno))")
            } else {
                logger.info("\(device.loopDevice) now has the origin's new size")
            }
        }
    }

    public func devices() -> [AttachedDevice] {
        attachLock.withLock {
            attached.values.sorted { ($0.tag ?? 0, $0.tag == nil ? 0 : 1) < ($1.tag ?? 0, $1.tag == nil ? 0 : 1) }
        }
    }

    private func deviceName(_ tag: UInt64?) -> String {
        configuration.deviceNameDirectory + "/" + (tag.map { "\(configuration.volume)(\($0))" } ?? configuration.volume)
    }

    private func describe(_ tag: UInt64?) -> String { tag.map { "snapshot \($0)" } ?? "the origin" }

    /// Removes a device-name symlink (only if it points at `target`, when given).
    private func removeName(_ name: String, ifPointingAt target: String?) {
        guard let dest = try? FileManager.default.destinationOfSymbolicLink(atPath: name) else { return }
        if target == nil || dest == target { unlink(name) }
    }

    /// What a server killed with -9 left behind, cleared before this one starts.
    private func clearLeftovers() {
        let c = configuration
        for line in DeadServerLeftovers.release(volume: c.volume, blockFileDirectory: c.blockFileDirectory,
                                                deviceNameDirectory: c.deviceNameDirectory) {
            logger.notice("\(line)")
        }
    }
}
