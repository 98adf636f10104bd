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
    /// `--no-snapmount`), NFS exports of the origin and the snapshots (through `nfsServer`, to
    /// `nfsClients`), a Samba share with the snapshots as previous versions (named
    /// `sambaShare`, else after the volume), a `.snapshot` link in the origin.
    public var snapmount = true
    public var export = false
    public var nfsServer: NFSServerChoice = .auto
    public var nfsClients = ["*"]
    public var samba = false
    public var sambaShare: String?
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
    /// Hosts this volume replicates to (`define target`), and the host it is a replica of
    /// (`define source`); their state is in ReplicationConfig's files.
    public var targets: [ReplicationTarget] = []
    public var source: ReplicationSource?

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
        nfsServer = try c.decodeIfPresent(NFSServerChoice.self, forKey: .nfsServer) ?? .auto
        nfsClients = try c.decodeIfPresent([String].self, forKey: .nfsClients) ?? ["*"]
        samba = try c.decodeIfPresent(Bool.self, forKey: .samba) ?? false
        sambaShare = try c.decodeIfPresent(String.self, forKey: .sambaShare)
        dotsnapshot = try c.decodeIfPresent(Bool.self, forKey: .dotsnapshot) ?? false
        expediteFreeze = try c.decodeIfPresent(Bool.self, forKey: .expediteFreeze) ?? true
        schedule = try c.decodeIfPresent([ScheduleEntry].self, forKey: .schedule) ?? []
        nextSnapshotTag = try c.decodeIfPresent(UInt64.self, forKey: .nextSnapshotTag) ?? 0
        lastSnapshotDirectory = try c.decodeIfPresent(String.self, forKey: .lastSnapshotDirectory)
        warnFillPercent = try c.decodeIfPresent(Int.self, forKey: .warnFillPercent) ?? 90
        replicated = try c.decodeIfPresent([String: UInt64].self, forKey: .replicated) ?? [:]
        targets = try c.decodeIfPresent([ReplicationTarget].self, forKey: .targets) ?? []
        source = try c.decodeIfPresent(ReplicationSource.self, forKey: .source)
    }

    /// How many snapshots of `kind` the schedule keeps (nil: the kind is not scheduled).
    public func keep(_ kind: String) -> Int? { schedule.first { $0.kind == kind }?.keep }
}

extension VolumeConfig {
    /// Reads a configuration; a damaged one is refused in one line that names the file, the
    /// field and its value, and how to recover (the previous version is kept beside it).
    static func load(_ path: String) throws -> VolumeConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ZumastorError.config("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let backup = backupPath(path)
        let hint = FileManager.default.fileExists(atPath: backup)
            ? "the previous version is in \(backup) (cp \(backup) \(path))"
            : "fix it, or forget the volume and define it again (its devices keep their data)"
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ZumastorError.config("\(path) is not valid JSON (\(data.isEmpty ? "it is empty" : "\((error as NSError).userInfo[NSDebugDescriptionErrorKey] ?? error)")); \(hint)")
        }
        if let problem = rangeProblem(object) { throw ZumastorError.config("\(path): \(problem); \(hint)") }
        do {
            return try JSONDecoder().decode(VolumeConfig.self, from: data)
        } catch let e as DecodingError {
            throw ZumastorError.config("\(path): \(describe(e, in: object)); \(hint)")
        } catch {
            throw ZumastorError.config("\(path) is not a volume configuration (\(error)); \(hint)")
        }
    }

    /// The numbers a decoder would only call "not valid JSON" when out of range, named with
    /// their field and value.
    private static func rangeProblem(_ object: Any) -> String? {
        guard let d = object as? [String: Any] else { return "it holds \(type(of: object)), not an object of fields" }
        func whole(_ v: Any) -> Int64? {
            guard let n = v as? NSNumber else { return nil }
            let x = n.doubleValue
            return x.rounded() == x && abs(x) < 9.2e18 ? Int64(x) : nil
        }
        func show(_ v: Any) -> String {
            (try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed])).map { String(decoding: $0, as: UTF8.self) } ?? "?"
        }
        var checks: [(String, Any, ClosedRange<Int64>)] = []
        for key in ["nextSnapshotTag", "cacheSizeBytes"] { if let v = d[key] { checks.append((key, v, 0...Int64.max)) } }
        if let v = d["warnFillPercent"] { checks.append(("warnFillPercent", v, 1...100)) }
        for (i, e) in ((d["schedule"] as? [Any]) ?? []).enumerated() {
            if let v = (e as? [String: Any])?["keep"] { checks.append(("schedule[\(i)].keep", v, 1...Int64(ScheduleEntry.keepMax))) }
        }
        for (target, v) in (d["replicated"] as? [String: Any]) ?? [:] { checks.append(("replicated[\(target)]", v, 0...Int64.max)) }
        for (field, v, range) in checks where v is NSNumber {
            guard let n = whole(v), range.contains(n) else {
                return "field '\(field)' is \(show(v)): it must be a whole number from \(range.lowerBound) to \(range.upperBound)"
            }
        }
        return nil
    }

    /// "field 'nextSnapshotTag' is -7, which is not ..." for a decoding error.
    private static func describe(_ e: DecodingError, in object: Any) -> String {
        func field(_ path: [CodingKey]) -> String { path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        func value(_ path: [CodingKey]) -> String {
            var at: Any? = object
            for key in path {
                if let i = key.intValue { at = (at as? [Any]).flatMap { i < $0.count ? $0[i] : nil } } else { at = (at as? [String: Any])?[key.stringValue] }
            }
            guard let at, let text = try? JSONSerialization.data(withJSONObject: at, options: [.fragmentsAllowed]) else { return "?" }
            return String(decoding: text, as: UTF8.self)
        }
        switch e {
        case let .keyNotFound(key, context):
            return "field '\(field(context.codingPath + [key]))' is missing"
        case let .valueNotFound(_, context):
            return "field '\(field(context.codingPath))' is null"
        case let .typeMismatch(type, context):
            return "field '\(field(context.codingPath))' is \(value(context.codingPath)), not a \(type == String.self ? "string" : type == Bool.self ? "true or false" : "value of type \(type)")"
        case let .dataCorrupted(context):
            let p = context.codingPath
            return p.isEmpty ? context.debugDescription : "field '\(field(p))' is \(value(p)): \(context.debugDescription.prefix(120))"
        @unknown default:
            return "\(e)"
        }
    }

    /// The previous version of the configuration at `path`, kept by `save`.
    static func backupPath(_ path: String) -> String { path + ".previous" }

    /// Replaces the file atomically (write, fsync, rename), keeping the version it replaces
    /// as `backupPath` (a hard link to it, made before the rename).
    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        if FileManager.default.fileExists(atPath: path), (try? VolumeConfig.load(path)) != nil {
            // Only a readable version is worth keeping: a damaged one would replace the good backup.
            let backup = VolumeConfig.backupPath(path)
            unlink(backup)
            link(path, backup)
        }
        try AtomicFile.write(data, to: path)
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
