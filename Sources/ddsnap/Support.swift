// What every subcommand shares: opening a store, sizes, tags, output.

import ArgumentParser
import Foundation
import SnapStore
import VolumeServer
import VolumeInterface

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Options every command that reaches a store accepts.
struct StoreOptionsGroup: ParsableArguments {
    @Argument(help: "The snapshot store (file or block device), or the control socket of its server.")
    var store: String

    @Option(name: .long, help: "Use this origin instead of the one the store records.")
    var origin: String?

    @Option(name: .long, help: "Metadata cache size (default 32M).", transform: parseSize)
    var cacheSize: UInt64?

    /// Reaches the volume: through its server when STORE is a socket, else by opening the
    /// store and its origin, each under an exclusive lock.
    func open() throws -> any VolumeAccess {
        do {
            return try openVolume(store, origin: origin, cacheSizeBytes: cacheSize.map { Int($0) }) { event in
                printError("ddsnap: \(event)")
            }
        } catch StoreError.inUse(let path) {
            throw VolumeError.inUse(describeLockHolder(path))
        } catch VolumeError.invalidArgument(let text) {
            throw ValidationError(text)
        }
    }
}

/// A handle that reads `replica` while an applier's writer thread writes it: a store opened
/// here locks its calls; a server's control connection carries one request at a time, so a
/// second one is opened (nil: the applier waits for its writer before each such read).
func referenceReader(for replica: any VolumeAccess) -> (any VolumeAccess)? {
    if replica is VolumeHost { return replica }
    if let client = replica as? ControlClient { return try? ControlClient(socketPath: client.socketPath) }
    return nil
}

/// "STORE is in use by `ddsnap server ...` (pid N)": who holds the lock, from /proc/locks.
func describeLockHolder(_ path: String) -> String {
    var st = stat()
    let generic = "\(path) is in use by another process (a ddsnap server or command holds its lock)"
    guard stat(path, &st) == 0, case let locks = readProcFile("/proc/locks"), !locks.isEmpty else { return generic }
    let major = (st.st_dev >> 8) & 0xfff, minor = (st.st_dev & 0xff) | ((st.st_dev >> 12) & 0xfff00)
    let id = String(format: "%02x:%02x:%lu", major, minor, st.st_ino)
    for line in locks.split(separator: "\n") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 6, fields.contains(where: { $0 == id }), let i = fields.firstIndex(where: { $0 == id }),
              let pid = Int32(fields[i - 1]) else { continue }
        let raw = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
        let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        let command = argv.isEmpty ? "process \(pid)" : argv.joined(separator: " ")
        if argv.count > 1, argv[1] == "server" {
            let socket = argv.firstIndex(of: "--socket").flatMap { $0 + 1 < argv.count ? argv[$0 + 1] : nil }
                ?? argv.firstIndex(of: "--name").flatMap { $0 + 1 < argv.count ? DaemonConfiguration.defaultSocketPath(volume: argv[$0 + 1]) : nil }
            return "\(path) is served by `\(command)` (pid \(pid)); give its control socket\(socket.map { " \($0)" } ?? "") instead of the store"
        }
        return "\(path) is in use by `\(command)` (pid \(pid))"
    }
    return generic
}

/// "16K" -> 16384; K, M, G, T are powers of 1024; plain numbers are bytes.
func parseSize(_ text: String) throws -> UInt64 {
    do { return try ByteSize.parse(text) } catch { throw ValidationError("\(error)") }
}

/// A snapshot tag: a non-negative number.
func parseTag(_ text: String) throws -> UInt64 {
    guard let tag = UInt64(text) else { throw ValidationError("'\(text)' is not a snapshot tag (a non-negative number)") }
    return tag
}

/// "origin" or a tag.
func parseSide(_ text: String) throws -> StoreSide {
    if text == "origin" { return .origin }
    return .snapshot(try parseTag(text))
}

/// Built once: a formatter is expensive, and listings format one time per snapshot.
private let localTimeFormatter: DateFormatter = {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone.current
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return f
}()
nonisolated(unsafe) private let isoFormatter = ISO8601DateFormatter()

func formatTime(_ nanoseconds: UInt64) -> String {
    localTimeFormatter.string(from: Date(timeIntervalSince1970: Double(nanoseconds) / 1e9))
}

func iso8601(_ nanoseconds: UInt64) -> String {
    isoFormatter.string(from: Date(timeIntervalSince1970: Double(nanoseconds) / 1e9))
}

func printJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys])
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func snapshotJSON(_ s: SnapshotInfo, usage: SnapshotUsage? = nil, chunkSize: Int) -> [String: Any] {
    var out: [String: Any] = [
        "tag": s.tag, "epoch": s.epoch, "created": iso8601(s.createdNanoseconds),
        "createdNanoseconds": s.createdNanoseconds, "originSizeBytes": s.originSizeBytes,
        "priority": Int(s.priority), "usecount": Int(s.usecount), "openCount": s.openCount, "state": s.squashed ? "squashed" : "normal",
        "name": s.name,
    ]
    if let usage {
        out["uniqueChunks"] = usage.uniqueChunks
        out["sharedChunks"] = usage.sharedChunks
        out["uniqueBytes"] = usage.uniqueChunks * UInt64(chunkSize)
        out["sharedBytes"] = usage.sharedChunks * UInt64(chunkSize)
    }
    return out
}

/// Fills `buffer` from `fd` (a pipe returns short reads, so writes stay large); returns the
/// byte count, short only at the end of the input.
func readFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
    var filled = 0
    while filled < buffer.count {
        let n = Foundation.read(fd, buffer.baseAddress! + filled, buffer.count - filled)
        if n < 0 {
            if errno == EINTR { continue }
            throw StoreError.io(operation: "read", path: path, errno: errno)
        }
        if n == 0 { break }
        filled += n
    }
    return filled
}

/// Buffered output (standard output unless told otherwise) for large listings and data.
final class Output {
    private var buffer: [UInt8] = []
    private let limit = 1 << 20
    let fd: Int32
    let path: String

    init(fd: Int32 = 1, path: String = "standard output") {
        (self.fd, self.path) = (fd, path)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: bytes)
        if buffer.count >= limit { try flush() }
    }
    func line(_ text: String) throws {
        buffer.append(contentsOf: Array((text + "\n").utf8))
        if buffer.count >= limit { try flush() }
    }
    func flush() throws {
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(operation: "write", path: path, errno: errno)
            }
            done += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
