// Logging of a volume's server: swift-log with one handler that writes every line, stamped
// with the time, the level and the volume's name, to the log file and to standard error.

import Foundation
import Logging
import VolumeInterface

/// Where a server's log lines go: appended with O_APPEND, one write(2) per line. A log file
/// renamed or removed under it (logrotate) is reopened at the next line: each line first
/// checks that the path still names the file it writes, so no process needs a signal.
final class LogSink: @unchecked Sendable {
    private let lock = NSLock()
    private let toStandardError: Bool
    private let path: String?
    private var file: Int32 = -1

    init(path: String?, toStandardError: Bool) throws {
        self.toStandardError = toStandardError
        self.path = path
        if let path {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            file = LogSink.open(path)
            guard file >= 0 else { throw VolumeError.system("cannot open log file \(path): \(String(cString: strerror(errno)))") }
        }
    }

    private static func open(_ path: String) -> Int32 { Foundation.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640) }

    func write(_ line: String) {
        let bytes = Array(line.utf8)
        lock.lock()
        defer { lock.unlock() }
        if let path { reopenIfRotated(path) }
        for fd in (toStandardError ? [2] : []) + (file >= 0 ? [file] : []) {
            _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        }
    }

    /// The path names another file, or none: it was rotated; write to a new one there.
    private func reopenIfRotated(_ path: String) {
        var named = stat(), open = stat()
        if file >= 0, stat(path, &named) == 0, fstat(file, &open) == 0, named.st_ino == open.st_ino, named.st_dev == open.st_dev { return }
        let fresh = LogSink.open(path)
        guard fresh >= 0 else { return }
        if file >= 0 { close(file) }
        file = fresh
    }
}

struct ServerLogHandler: LogHandler {
    let program: String
    let volume: String
    let sink: LogSink
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        let extra = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        sink.write("\(timestamp()) \(program)[\(getpid())] \(volume) \(event.level): \(event.message)\(extra)\n")
    }

    private func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var t = tm()
        var seconds = now.tv_sec
        localtime_r(&seconds, &t)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d.%03d", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                      t.tm_hour, t.tm_min, t.tm_sec, now.tv_nsec / 1_000_000)
    }
}

/// A logger of `program` ("ddsnap", "zumastor") for `volume`, writing to `path` (if given)
/// and standard error.
public func makeVolumeLogger(program: String, volume: String, path: String?, toStandardError: Bool = true) throws -> Logger {
    let sink = try LogSink(path: path, toStandardError: toStandardError)
    return Logger(label: "zumastor.\(program)") { _ in ServerLogHandler(program: program, volume: volume, sink: sink) }
}
