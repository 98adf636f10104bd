import ArgumentParser
import CSupport
import Foundation
import SnapStore
import VolumeServer
import VolumeInterface

struct Server: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Serve a volume: control socket, block files with loop devices, NBD.",
        discussion: """
            One server per volume owns the store and its origin. Other ddsnap commands reach it by \
            giving its control socket instead of the store. Without --foreground the server detaches \
            and this command returns once it serves (or prints why it could not start). SIGTERM or \
            SIGINT stops it cleanly.
            """)

    @Argument(help: "The snapshot store (file or block device).") var store: String
    @Option(help: "The volume's name (device names, NBD export names, log lines).") var name: String
    @Option(help: "Use this origin instead of the one the store records.") var origin: String?
    @Option(help: "Control socket (default /var/run/zumastor/servers/NAME).") var socket: String?
    @Option(help: "NBD Unix socket (default: the control socket's path plus .nbd).") var nbdSocket: String?
    @Option(help: ArgumentHelp("Also serve NBD on this TCP address.", valueName: "host:port")) var nbdListen: String?
    @Option(help: ArgumentHelp("TLS for --nbd-listen, required of every client there: a directory with ca-cert.pem, server-cert.pem and server-key.pem (mode 600); clients show a certificate signed by ca-cert.pem. Needed unless --nbd-listen is a loopback address.", valueName: "dir")) var nbdTls: String?
    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://HOST:PORT/metrics (a loopback address).", valueName: "host:port")) var metricsListen: String?
    @Option(help: "Directory of the block files (default /var/run/zumastor/devices/NAME).") var blockFiles: String?
    @Option(help: "Log file (default /var/log/zumastor/NAME/server.log).") var log: String?
    @Option(help: "Metadata cache size (default 32M).", transform: parseSize) var cacheSize: UInt64?
    @Flag(help: "Stay in the foreground, logging to standard error too.") var foreground = false
    @Option(help: .hidden) var readyFd: Int32?

    func validate() throws {
        do { try DaemonConfiguration.validateVolumeName(name) } catch { throw ValidationError("\(error)") }
        let nbdHost = try nbdListen.map { try parseListen($0).host }
        do { try DaemonConfiguration.checkNBDListen(nbdHost, tlsDirectory: nbdTls) } catch { throw ValidationError("\(error)") }
        if let metricsListen {
            let (host, _) = try parseListen(metricsListen)
            do { try MetricsEndpoint.checkLoopback(host) } catch { throw ValidationError("--metrics-listen: \(error)") }
        }
    }

    func run() throws {
        if !foreground { return try daemonize() }
        VolumeDaemon.blockSignals()
        let socketPath = absolute(socket ?? DaemonConfiguration.defaultSocketPath(volume: name))
        var c = DaemonConfiguration(volume: name, storePath: absolute(store), socketPath: socketPath,
                                    blockFileDirectory: absolute(blockFiles ?? DaemonConfiguration.defaultBlockFileDirectory(volume: name)))
        c.originPath = origin.map(absolute)
        c.nbdSocketPath = absolute(nbdSocket ?? socketPath + ".nbd")
        c.nbdListen = try nbdListen.map(parseListen)
        c.nbdTLSDirectory = nbdTls.map(absolute)
        c.metricsListen = try metricsListen.map(parseListen)
        c.logPath = absolute(log ?? DaemonConfiguration.defaultLogPath(volume: name))
        c.logToStandardError = readyFd == nil
        c.cacheSizeBytes = cacheSize.map { Int($0) }
        let daemon: VolumeDaemon
        do {
            daemon = try VolumeDaemon(c)
        } catch {
            report(ready: false, "\(error)")
            throw error
        }
        report(ready: true, "pid \(getpid())")
        daemon.runUntilSignalled()
    }

    /// Tells the parent waiting in `daemonize` how the start went.
    private func report(ready: Bool, _ text: String) {
        guard let readyFd else { return }
        let line = Array(((ready ? "ok " : "error ") + text + "\n").utf8)
        _ = line.withUnsafeBytes { Foundation.write(readyFd, $0.baseAddress, $0.count) }
        close(readyFd)
    }

    /// Starts the server in its own session and waits until it serves or fails.
    private func daemonize() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw VolumeError.system("pipe: \(describeErrno(errno))") }
        // Descriptor 3 in the child: keep the write end away from 3 here so the dup is real,
        // and close-on-exec so only the dup reaches the child.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        let writeEnd = fcntl(fds[1], F_DUPFD_CLOEXEC, 10)
        close(fds[1])
        var arguments = Array(CommandLine.arguments)
        arguments += ["--foreground", "--ready-fd", "3"]
        let cArguments = arguments.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        let pid = zuma_spawn_detached("/proc/self/exe", cArguments, writeEnd)
        close(writeEnd)
        guard pid > 0 else {
            close(fds[0])
            throw VolumeError.system("cannot start the server: \(describeErrno(errno))")
        }
        var answer = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Foundation.read(fds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        close(fds[0])
        let text = String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("ok ") {
            let socketPath = absolute(socket ?? DaemonConfiguration.defaultSocketPath(volume: name))
            print("ddsnap server for \(name) running (pid \(pid)); control socket \(socketPath)")
            return
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        printError("ddsnap: " + (text.hasPrefix("error ") ? String(text.dropFirst(6)) : "the server exited before it was ready"))
        throw ExitCode(1)
    }
}

/// "host:port" (IPv6 hosts in brackets).
func parseListen(_ text: String) throws -> (host: String, port: Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
        throw ValidationError("'\(text)' is not HOST:PORT")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw ValidationError("'\(text)' has no host") }
    return (host, port)
}

func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}
