// A volume's replication relationships with other hosts, as `define target` and `define source`
// record them in its configuration, and the state of each one (what the peer holds, the
// transfer under way, the last error), kept in a file of its own beside the configuration:
// /var/lib/zumastor/volumes/<vol>/replication/{target-<host>-<port>,source}.json. Only the
// cycle of a relationship writes its state (the cycle holds its lock), so nothing else can
// overwrite it, and the configuration changes only when the administrator changes it.

import Foundation
import Replication
import Transport

/// A host this volume sends its snapshots to (`define target`).
public struct ReplicationTarget: Codable, Equatable, Sendable {
    public var host: String
    public var port: Int
    /// The fingerprint of the target host's key, pinned.
    public var key: String
    /// The volume's name on the target (nil: the same name).
    public var remoteName: String?
    /// Seconds between cycles pushed from here (nil: none; cycles are asked for by hand or
    /// by the target).
    public var period: Int?
    /// Bytes per second on the wire at most (nil: no limit).
    public var rateBytesPerSecond: UInt64?
    /// How records are compressed on the wire (`Compression.parse`: none, zstd[:LEVEL], lzma[:LEVEL]).
    public var compression = "zstd"
    /// Periodic cycles run (`start target`; `stop target` pauses them).
    public var started = true

    public init(host: String, port: Int, key: String) { (self.host, self.port, self.key) = (host, port, key) }

    /// Fields with a default may be absent (a file of an older build).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        (host, port, key) = (try c.decode(String.self, forKey: .host), try c.decode(Int.self, forKey: .port), try c.decode(String.self, forKey: .key))
        remoteName = try c.decodeIfPresent(String.self, forKey: .remoteName)
        period = try c.decodeIfPresent(Int.self, forKey: .period)
        rateBytesPerSecond = try c.decodeIfPresent(UInt64.self, forKey: .rateBytesPerSecond)
        compression = try c.decodeIfPresent(String.self, forKey: .compression) ?? compression
        started = try c.decodeIfPresent(Bool.self, forKey: .started) ?? started
    }

    public var endpoint: Endpoint { Endpoint(host: host, port: port) }
    /// Its name in file names and messages.
    public var id: String { "\(host)-\(port)".map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }.reduce(into: "") { $0.append($1) } }

    /// Whether `text` (HOST or HOST:PORT, as given to replicate, start, stop, forget) names it.
    public func matches(_ text: String) -> Bool {
        if text == host { return true }
        guard let e = try? Endpoint(parsing: text) else { return false }
        return e.host == host && e.port == port
    }
}

/// The host this volume receives its snapshots from (`define source`): the volume is a replica.
public struct ReplicationSource: Codable, Equatable, Sendable {
    public var host: String
    public var port: Int
    public var key: String
    public var remoteName: String?
    /// Seconds between cycles this replica asks for (nil: none).
    public var period: Int?
    /// Received snapshots with a kind of the replica's schedule are mounted and linked as on
    /// a master.
    public var mountSnap = false
    /// Periodic pulls run (`start source`).
    public var started = false

    public init(host: String, port: Int, key: String) { (self.host, self.port, self.key) = (host, port, key) }

    /// Fields with a default may be absent (a file of an older build).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        (host, port, key) = (try c.decode(String.self, forKey: .host), try c.decode(Int.self, forKey: .port), try c.decode(String.self, forKey: .key))
        remoteName = try c.decodeIfPresent(String.self, forKey: .remoteName)
        period = try c.decodeIfPresent(Int.self, forKey: .period)
        mountSnap = try c.decodeIfPresent(Bool.self, forKey: .mountSnap) ?? mountSnap
        started = try c.decodeIfPresent(Bool.self, forKey: .started) ?? started
    }

    public var endpoint: Endpoint { Endpoint(host: host, port: port) }
}

/// What a relationship's cycles left behind.
public struct LinkState: Codable, Equatable, Sendable {
    /// Target: the snapshot the target holds, the base of the next delta (pinned here).
    public var held: UInt64?
    /// Target: the snapshot of the transfer under way, or interrupted (kept for a resume).
    public var sending: UInt64?
    /// The last snapshot replicated, and when it was taken (nanoseconds since 1970).
    public var lastSnapshot: UInt64?
    public var lastSnapshotCreatedNanoseconds: UInt64?
    /// Seconds since 1970 of the last success and the last attempt.
    public var lastSuccess: Int?
    public var lastAttempt: Int?
    public var lastError: String?
    /// Whether the last cycle resumed an interrupted transfer, and from which chunk.
    public var lastResumedAt: UInt64?
    /// Source: where an interrupted transfer stopped (what the replica made durable).
    public var resume: ResumePoint?
    /// A transfer under way: chunks done and total, bytes sent, when it started.
    public var progress: TransferProgress?
    /// Bytes of every cycle so far, sent (target) or received (source), message headers included.
    public var bytesTotal: UInt64?
    /// Failed cycles so far, by reason (`LinkState.failureReason`).
    public var failures: [String: UInt64]?

    public init() {}

    /// Records a failed cycle: its message, and one more failure of its kind.
    mutating func noteFailure(_ error: Error) {
        lastError = "\(error)"
        failures = failures ?? [:]
        failures![LinkState.failureReason(error), default: 0] += 1
    }

    /// Adds a cycle's bytes to the total.
    mutating func count(bytes: UInt64) { bytesTotal = (bytesTotal ?? 0) + bytes }

    /// What kind of failure `error` is, in a word a metric label can carry: `network` (the
    /// peer unreachable or the connection lost), `peer_key` (a key that is not the pinned
    /// one), `refused` (the peer said no), `protocol` (a malformed or out-of-order message),
    /// `stream` (a damaged or unfit delta stream), `local` (this host's volume or store).
    public static func failureReason(_ error: Error) -> String {
        switch error {
        case let e as TransportError:
            if case .refusedPeer = e { return "peer_key" }
            return "network"
        case let e as LinkError:
            if case .refused = e { return "refused" }
            return "protocol"
        case is DeltaError: return "stream"
        default: return "local"
        }
    }
}

public struct TransferProgress: Codable, Equatable, Sendable {
    public var chunksDone: UInt64
    public var chunksTotal: UInt64
    public var bytes: UInt64
    public var started: Int
    public var updated: Int
    public var pid: Int32?

    /// Bytes per second so far, and seconds left at that rate (nil: not known yet).
    public var rate: Double { updated > started ? Double(bytes) / Double(updated - started) : 0 }
    public var secondsLeft: Int? {
        guard chunksDone > 0, updated > started else { return nil }
        let perChunk = Double(updated - started) / Double(chunksDone)
        return Int(perChunk * Double(chunksTotal - min(chunksDone, chunksTotal)))
    }
}

extension LinkState {
    static func load(_ path: String) -> LinkState {
        guard let data = FileManager.default.contents(atPath: path), let s = try? JSONDecoder().decode(LinkState.self, from: data) else { return LinkState() }
        return s
    }

    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(self), to: path)
    }
}

extension ZumastorPaths {
    public func replicationDirectory(_ volume: String) -> String { volumeDirectory(volume) + "/replication" }
    public func targetState(_ volume: String, _ t: ReplicationTarget) -> String { replicationDirectory(volume) + "/target-\(t.id).json" }
    public func sourceState(_ volume: String) -> String { replicationDirectory(volume) + "/source.json" }
    /// The replication service: its pid file (locked while it runs), its log, and where it listens.
    public var replicatorPIDFile: String { run + "/replicator.pid" }
    public var replicatorLog: String { log + "/replication.log" }
    public var listenFile: String { etc + "/listen" }
    public func replicationLog(_ volume: String) -> String { logDirectory(volume) + "/replication.log" }
    /// Where a replica mounts its received snapshots; `mount/<vol>` links to the newest.
    public func replicaViews(_ volume: String) -> String { run + "/views/" + volume }
}

/// Files replaced whole: written beside, synced, renamed over, the directory synced. Root's
/// alone unless `mode` says otherwise.
enum AtomicFile {
    /// Writes `text` to `path` unless the file holds it already; returns whether it wrote.
    @discardableResult
    static func writeIfChanged(_ text: String, to path: String) throws -> Bool {
        let data = Data(text.utf8)
        if FileManager.default.contents(atPath: path) == data { return false }
        try write(data, to: path)
        return true
    }

    static func write(_ data: Data, to path: String, mode: mode_t = 0o600) throws {
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let temporary = path + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw ZumastorError.config("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        // (A leftover of a crash keeps the mode it was made with.)
        fchmod(fd, mode)
        let written = data.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw ZumastorError.config("cannot write \(path): \(reason)")
        }
        let dirFD = open(dir, O_RDONLY | O_DIRECTORY)
        if dirFD >= 0 { fsync(dirFD); close(dirFD) }
    }
}
