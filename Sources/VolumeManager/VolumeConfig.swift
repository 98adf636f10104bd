// A defined volume's configuration, one JSON file per volume
// (/var/lib/zumastor/volumes/<vol>/config.json), replaced atomically (write, fsync, rename).

import Foundation
import VolumeServer

public struct VolumeConfig: Codable, Equatable, Sendable {
    public var name: String
    /// The origin and the snapshot store, symbolic links resolved.
    public var origin: String
    public var store: String
    public var cacheSizeBytes: UInt64?
    /// Where the origin is mounted (nil: /var/run/zumastor/mount/<vol>), and with what options.
    public var mountPoint: String?
    public var mountOptions: String?
    /// Where snapshots are mounted (nil: /var/run/zumastor/snapshot/<vol>).
    public var snapshotDirectory: String?
    /// A master volume's origin is mounted while the volume runs (`define master`).
    public var master = false
    /// Master options: snapshots mounted under the snapshot directory (unless
    /// `--no-snapmount`), NFS re-export after each mount change, Samba `@GMT-` bind mounts in
    /// the origin, a `.snapshot` link in the origin.
    public var snapmount = true
    public var export = false
    public var samba = false
    public var dotsnapshot = false
    /// The snapshot freeze expedites the kernel's RCU grace periods (RCUExpedite); off with
    /// `define master --no-expedite`.
    public var expediteFreeze = true
    /// Rotation: how many snapshots of each kind are kept (`define schedule`).
    public var schedule: [ScheduleEntry] = []
    /// The next snapshot id; it advances by two and never goes back.
    public var nextSnapshotTag: UInt64 = 0
    /// The directory name given to the newest snapshot: names are never given twice.
    public var lastSnapshotDirectory: String?
    /// Status and the log warn when the snapshot store is at least this full.
    public var warnFillPercent = 90
    /// Replication targets (canonical path of a replica's store or socket) -> the last snapshot
    /// each received, held as the base of its next stream (`zumastor replicate`).
    public var replicated: [String: UInt64] = [:]

    public init(name: String, origin: String, store: String) {
        self.name = name
        self.origin = origin
        self.store = store
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        origin = try c.decode(String.self, forKey: .origin)
        store = try c.decode(String.self, forKey: .store)
        cacheSizeBytes = try c.decodeIfPresent(UInt64.self, forKey: .cacheSizeBytes)
        mountPoint = try c.decodeIfPresent(String.self, forKey: .mountPoint)
        mountOptions = try c.decodeIfPresent(String.self, forKey: .mountOptions)
        snapshotDirectory = try c.decodeIfPresent(String.self, forKey: .snapshotDirectory)
        master = try c.decodeIfPresent(Bool.self, forKey: .master) ?? false
        snapmount = try c.decodeIfPresent(Bool.self, forKey: .snapmount) ?? true
        export = try c.decodeIfPresent(Bool.self, forKey: .export) ?? false
        samba = try c.decodeIfPresent(Bool.self, forKey: .samba) ?? false
        dotsnapshot = try c.decodeIfPresent(Bool.self, forKey: .dotsnapshot) ?? false
        expediteFreeze = try c.decodeIfPresent(Bool.self, forKey: .expediteFreeze) ?? true
        schedule = try c.decodeIfPresent([ScheduleEntry].self, forKey: .schedule) ?? []
        nextSnapshotTag = try c.decodeIfPresent(UInt64.self, forKey: .nextSnapshotTag) ?? 0
        lastSnapshotDirectory = try c.decodeIfPresent(String.self, forKey: .lastSnapshotDirectory)
        warnFillPercent = try c.decodeIfPresent(Int.self, forKey: .warnFillPercent) ?? 90
        replicated = try c.decodeIfPresent([String: UInt64].self, forKey: .replicated) ?? [:]
    }

    /// How many snapshots of `kind` the schedule keeps (nil: the kind is not scheduled).
    public func keep(_ kind: String) -> Int? { schedule.first { $0.kind == kind }?.keep }
}

extension VolumeConfig {
    static func load(_ path: String) throws -> VolumeConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ZumastorError.config("cannot read \(path)")
        }
        do {
            return try JSONDecoder().decode(VolumeConfig.self, from: data)
        } catch {
            throw ZumastorError.config("\(path) is not a volume configuration: \(error)")
        }
    }

    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let temporary = path + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ZumastorError.config("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ZumastorError.config("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let dirFD = open(dir, O_RDONLY | O_DIRECTORY)
        if dirFD >= 0 { fsync(dirFD); close(dirFD) }
    }
}

public enum ZumastorError: Error, Equatable, CustomStringConvertible, Sendable {
    case config(String)
    case unknownVolume(String)
    case invalid(String)
    case failed(String)

    public var description: String {
        switch self {
        case let .config(text), let .invalid(text), let .failed(text): return text
        case let .unknownVolume(name): return "volume '\(name)' is not defined (zumastor status lists the defined volumes)"
        }
    }
}
