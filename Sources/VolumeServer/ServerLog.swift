// Logging of a volume's server: swift-log with one handler that writes every line, stamped
// with the time, the level and the volume's name, to the log file and to standard error.

import Foundation
import Logging
import VolumeInterface

/// Where a server's log lines go: appended with O_APPEND, one write(2) per line.
final class LogSink: @unchecked Sendable {
    private let lock = NSLock()
    private var descriptors: [Int32]

    init(path: String?, toStandardError: Bool) throws {
        descriptors = toStandardError ? [2] : []
        if let path {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw VolumeError.system("cannot open log file \(path): \(String(cString: strerror(errno)))") }
            descriptors.append(fd)
        }
    }

    func write(_ line: String) {
        let bytes = Array(line.utf8)
        lock.lock()
        defer { lock.unlock() }
        for fd in descriptors {
            _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        }
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
