// Snapshot kinds and rotation. A snapshot taken as `hourly` (or `daily`, ..., or a custom
// kind) carries its kinds for life; the schedule says how many of each kind are kept. A
// snapshot goes when every kind it has is past its kind's limit; manual snapshots (no kind)
// and kinds no longer in the schedule are kept until deleted by hand. `<kind>.0` names the
// newest snapshot of a kind. Times follow the local calendar: hourly at the top of the hour,
// daily at midnight, weekly at midnight before Monday (Sunday 00:00), monthly on the 1st.

import Foundation

public struct ScheduleEntry: Codable, Equatable, Sendable {
    public var kind: String
    public var keep: Int
    /// The most snapshots of one kind a schedule keeps (hourly: more than eleven years).
    public static let keepMax = 100_000

    public init(kind: String, keep: Int) {
        (self.kind, self.keep) = (kind, keep)
    }
}

public enum SnapshotKind {
    /// Kinds the running master takes by itself; custom kinds need `zumastor snapshot`.
    public static let automatic = ["hourly", "daily", "weekly", "monthly"]
    /// The kind of the snapshots `zumastor replicate` takes: never mounted or linked, deleted
    /// by a later replication once no target holds them as its base. Not for schedules.
    public static let replication = "replication"

    /// A kind name: 1 to 16 of a-z, 0-9, '_' and '-', starting with a letter.
    public static func validate(_ kind: String) throws {
        let bytes = Array(kind.utf8)
        let allowed = bytes.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 }
        guard (1...16).contains(bytes.count), allowed, let first = bytes.first, first >= 97 && first <= 122 else {
            throw ZumastorError.invalid("snapshot kind '\(kind)' must be 1 to 16 characters of a-z, 0-9, '_' and '-', starting with a letter")
        }
    }
}

/// What a snapshot made by zumastor records in its store name: the directory it is mounted
/// at (YYYY.MM.DD-HH.MM.SS, with .N added for a second snapshot in the same second) and its
/// kinds: "2026.11.24-10.00.00 hourly,daily". Kept in the store, it is replicated with it.
public struct SnapshotLabel: Equatable, Sendable {
    public var directory: String
    public var kinds: [String]

    public init(directory: String, kinds: [String]) {
        (self.directory, self.kinds) = (directory, kinds)
    }

    public init?(name: String) {
        let parts = name.split(separator: " ", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), SnapshotLabel.isDirectoryName(String(parts[0])) else { return nil }
        directory = String(parts[0])
        kinds = parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : []
        guard parts.count == 1 || !kinds.isEmpty, (try? kinds.forEach(SnapshotKind.validate)) != nil else { return nil }
    }

    public var name: String { kinds.isEmpty ? directory : directory + " " + kinds.joined(separator: ",") }

    /// "YYYY.MM.DD-HH.MM.SS" or "YYYY.MM.DD-HH.MM.SS.N".
    static func isDirectoryName(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard b.count >= 19 else { return false }
        let pattern = Array("dddd.dd.dd-dd.dd.dd".utf8)
        for (i, p) in pattern.enumerated() {
            if p == UInt8(ascii: "d") ? !(48...57).contains(b[i]) : b[i] != p { return false }
        }
        if b.count == 19 { return true }
        return b[19] == UInt8(ascii: ".") && b.count > 20 && b.count <= 26 && b[20...].allSatisfy { (48...57).contains($0) }
    }

    /// The directory name for a snapshot taken at `seconds` (local time): not in `taken`, and
    /// after `last`, the name given before it. A name once given is never given again, even
    /// after its snapshot went: a later snapshot of the same second takes the next suffix
    /// (`.1`, `.2`, ...), and a clock set back keeps counting on from `last`.
    static func directory(at seconds: Int, avoiding taken: Set<String>, after last: String? = nil) -> String {
        var base = formatTime(seconds, utc: false)
        var n = 0
        if let last {
            let (lastBase, lastN) = splitSuffix(last)
            if base <= lastBase { (base, n) = (lastBase, lastN + 1) }
        }
        func name(_ n: Int) -> String { n == 0 ? base : "\(base).\(n)" }
        while taken.contains(name(n)) { n += 1 }
        return name(n)
    }

    /// "2026.12.03-10.07.29.2" -> ("2026.12.03-10.07.29", 2); no suffix: 0.
    static func splitSuffix(_ directory: String) -> (base: String, n: Int) {
        let baseLength = "YYYY.MM.DD-HH.MM.SS".count
        guard directory.count > baseLength + 1, let n = Int(directory.dropFirst(baseLength + 1)) else { return (directory, 0) }
        return (String(directory.prefix(baseLength)), n)
    }
}

/// "YYYY.MM.DD-HH.MM.SS" of a time, local or UTC.
func formatTime(_ seconds: Int, utc: Bool) -> String {
    var t = tm()
    var s = time_t(seconds)
    if utc { gmtime_r(&s, &t) } else { localtime_r(&s, &t) }
    return String(format: "%04d.%02d.%02d-%02d.%02d.%02d", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                  t.tm_hour, t.tm_min, t.tm_sec)
}

public enum Rotation {
    /// The snapshots (tag, kinds) that the schedule drops, oldest first. Tags grow with time.
    public static func expired(_ snapshots: [(tag: UInt64, kinds: [String])], schedule: [ScheduleEntry]) -> [UInt64] {
        var kept = Set<UInt64>()
        var rotated = Set<UInt64>()
        for entry in schedule {
            let ofKind = snapshots.filter { $0.kinds.contains(entry.kind) }.map(\.tag).sorted(by: >)
            kept.formUnion(ofKind.prefix(max(entry.keep, 0)))
            rotated.formUnion(ofKind)
        }
        let scheduled = Set(schedule.map(\.kind))
        return snapshots.filter { s in
            !s.kinds.isEmpty && !kept.contains(s.tag) && rotated.contains(s.tag)
                && s.kinds.allSatisfy { scheduled.contains($0) }
        }.map(\.tag).sorted()
    }

    /// `<kind>.<n>` -> the directory of the n-th newest snapshot of that kind.
    public static func links(_ snapshots: [(tag: UInt64, label: SnapshotLabel)]) -> [String: String] {
        var links: [String: String] = [:]
        let kinds = Set(snapshots.flatMap(\.label.kinds)).subtracting([SnapshotKind.replication])
        for kind in kinds {
            let ofKind = snapshots.filter { $0.label.kinds.contains(kind) }.sorted { $0.tag > $1.tag }
            for (n, s) in ofKind.enumerated() { links["\(kind).\(n)"] = s.label.directory }
        }
        return links
    }

    /// Whether `name` has the form of a rotation link (`<kind>.<n>`).
    static func isLinkName(_ name: String) -> Bool {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return false }
        let number = name[name.index(after: dot)...]
        return !number.isEmpty && number.allSatisfy(\.isNumber)
            && (try? SnapshotKind.validate(String(name[..<dot]))) != nil
    }
}

/// When scheduled kinds are due. `hourSeconds` (tests: ZUMASTOR_SCHEDULE_HOUR_SECONDS)
/// replaces the calendar by fixed periods of that many seconds per hour.
public struct ScheduleClock: Sendable {
    public var hourSeconds: Int?

    public init(hourSeconds: Int? = nil) { self.hourSeconds = hourSeconds }

    public static func fromEnvironment() -> ScheduleClock {
        ScheduleClock(hourSeconds: ProcessInfo.processInfo.environment["ZUMASTOR_SCHEDULE_HOUR_SECONDS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil })
    }

    /// The first time after `now` (seconds since the epoch) at which `kind` is due; nil for
    /// kinds that are not automatic.
    public func nextDue(_ kind: String, after now: Int) -> Int? {
        if let hourSeconds {
            let hours = ["hourly": 1, "daily": 24, "weekly": 168, "monthly": 720][kind]
            guard let hours else { return nil }
            let period = hours * hourSeconds
            return (now / period + 1) * period
        }
        var t = tm()
        var s = time_t(now)
        localtime_r(&s, &t)
        t.tm_sec = 0
        t.tm_min = 0
        t.tm_isdst = -1
        switch kind {
        case "hourly": t.tm_hour += 1
        case "daily": t.tm_hour = 0; t.tm_mday += 1
        case "weekly": t.tm_hour = 0; t.tm_mday += t.tm_wday == 0 ? 7 : 7 - Int32(t.tm_wday)
        case "monthly": t.tm_hour = 0; t.tm_mday = 1; t.tm_mon += 1
        default: return nil
        }
        return Int(mktime(&t))
    }
}
