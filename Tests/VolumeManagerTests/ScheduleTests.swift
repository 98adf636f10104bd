import Foundation
import Testing
@testable import VolumeManager

@Suite struct ScheduleTests {
    // MARK: Labels

    @Test func labelsRoundTrip() {
        let label = SnapshotLabel(directory: "2026.11.24-10.00.00", kinds: ["hourly", "daily"])
        #expect(label.name == "2026.11.24-10.00.00 hourly,daily")
        #expect(SnapshotLabel(name: label.name) == label)
        #expect(SnapshotLabel(name: "2026.11.24-10.00.00") == SnapshotLabel(directory: "2026.11.24-10.00.00", kinds: []))
        #expect(SnapshotLabel(name: "2026.11.24-10.00.00.3 custom-1")?.directory == "2026.11.24-10.00.00.3")
    }

    @Test func foreignNamesAreNotLabels() {
        for name in ["", "backup", "2026.11.24 hourly", "2026.11.24-10.00.0x", "2026.11.24-10.00.00 ", "2026.11.24-10.00.00 Hourly",
                     "2026.11.24-10.00.00 a b", "2026.11.24-10.00.00.", "2026.11.24-10.00.00.1234567", "../../etc/passwd"] {
            #expect(SnapshotLabel(name: name) == nil, "\(name)")
        }
    }

    @Test func directoriesAreUniqueWithinOneSecond() {
        let first = SnapshotLabel.directory(at: 1_000_000_000, avoiding: [])
        let second = SnapshotLabel.directory(at: 1_000_000_000, avoiding: [first])
        let third = SnapshotLabel.directory(at: 1_000_000_000, avoiding: [first, second])
        #expect(second == first + ".1")
        #expect(third == first + ".2")
        #expect(SnapshotLabel.isDirectoryName(third))
        // Names sort in time order.
        #expect([third, first, second].sorted() == [first, second, third])
    }

    /// Issue 19, item 5: rotation freed "...29.1", and the next snapshot of that second took
    /// it again. A name follows the one given before it, whatever is still there.
    @Test func aNameIsNeverGivenTwice() {
        let first = SnapshotLabel.directory(at: 1_000_000_000, avoiding: [])
        let second = SnapshotLabel.directory(at: 1_000_000_000, avoiding: [first], after: first)
        // Both rotated away: the next one of the same second still takes a new name.
        let third = SnapshotLabel.directory(at: 1_000_000_000, avoiding: [], after: second)
        #expect(second == first + ".1")
        #expect(third == first + ".2")
        // A later second starts without a suffix; a clock set back counts on from the last name.
        let later = SnapshotLabel.directory(at: 1_000_000_001, avoiding: [], after: third)
        #expect(later == SnapshotLabel.directory(at: 1_000_000_001, avoiding: []))
        #expect(SnapshotLabel.directory(at: 999_999_990, avoiding: [], after: later) == later + ".1")
        #expect([third, later, first, second].sorted() == [first, second, third, later])
    }

    // MARK: Rotation

    @Test func rotationKeepsTheNewestOfEachKind() {
        var snaps: [(tag: UInt64, kinds: [String])] = []
        for i in 0..<50 { snaps.append((UInt64(2 * i), ["hourly"])) }
        let dropped = Rotation.expired(snaps, schedule: [ScheduleEntry(kind: "hourly", keep: 24)])
        #expect(dropped == (0..<26).map { UInt64(2 * $0) })
    }

    @Test func aSnapshotStaysWhileAnyOfItsKindsKeepsIt() {
        let snaps: [(tag: UInt64, kinds: [String])] = [(0, ["hourly", "daily"]), (2, ["hourly"]), (4, ["hourly"]), (6, []), (8, ["weekly"])]
        let schedule = [ScheduleEntry(kind: "hourly", keep: 1), ScheduleEntry(kind: "daily", keep: 7)]
        // 0 is kept as a daily; 6 is manual; weekly is not scheduled any more, so 8 is kept.
        #expect(Rotation.expired(snaps, schedule: schedule) == [2])
        #expect(Rotation.expired(snaps, schedule: []) == [])
    }

    @Test func linksNameTheNewestFirst() {
        let snaps: [(tag: UInt64, label: SnapshotLabel)] = [
            (0, SnapshotLabel(directory: "a", kinds: ["hourly", "daily"])),
            (2, SnapshotLabel(directory: "b", kinds: ["hourly"])),
            (4, SnapshotLabel(directory: "c", kinds: [])),
        ]
        #expect(Rotation.links(snaps) == ["hourly.0": "b", "hourly.1": "a", "daily.0": "a"])
        #expect(Rotation.isLinkName("hourly.0") && Rotation.isLinkName("my-kind.12"))
        #expect(!Rotation.isLinkName("2026.11.24-10.00.00") && !Rotation.isLinkName("hourly.") && !Rotation.isLinkName(".0"))
    }

    @Test func kindNames() throws {
        for good in ["hourly", "a", "x1_-y", "abcdefghijklmnop"] { try SnapshotKind.validate(good) }
        for bad in ["", "1st", "Hourly", "a b", "a,b", "a/b", "abcdefghijklmnopq"] {
            #expect(throws: ZumastorError.self) { try SnapshotKind.validate(bad) }
        }
    }

    // MARK: Clock

    /// The local time of `seconds` as (year, month, day, hour, minute, second, weekday).
    private func local(_ seconds: Int) -> [Int] {
        var t = tm()
        var s = time_t(seconds)
        localtime_r(&s, &t)
        return [Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday), Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec), Int(t.tm_wday)]
    }

    private func time(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int, _ s: Int) -> Int {
        var t = tm()
        (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, t.tm_isdst) = (Int32(y - 1900), Int32(mo - 1), Int32(d), Int32(h), Int32(mi), Int32(s), -1)
        return Int(mktime(&t))
    }

    @Test func calendarDueTimes() throws {
        let clock = ScheduleClock()
        // Saturday 2026-01-31 23:59:59.
        let now = time(2026, 1, 31, 23, 59, 59)
        #expect(local(try #require(clock.nextDue("hourly", after: now))).prefix(6) == [2026, 2, 1, 0, 0, 0])
        #expect(local(try #require(clock.nextDue("daily", after: now))).prefix(6) == [2026, 2, 1, 0, 0, 0])
        #expect(local(try #require(clock.nextDue("weekly", after: now))) == [2026, 2, 1, 0, 0, 0, 0])
        #expect(local(try #require(clock.nextDue("monthly", after: now))).prefix(6) == [2026, 2, 1, 0, 0, 0])
        // Exactly on the hour: the next one, not this one.
        let onTheHour = time(2026, 12, 31, 10, 0, 0)
        #expect(local(try #require(clock.nextDue("hourly", after: onTheHour))).prefix(6) == [2026, 12, 31, 11, 0, 0])
        #expect(local(try #require(clock.nextDue("monthly", after: onTheHour))).prefix(6) == [2027, 1, 1, 0, 0, 0])
        // A Sunday at noon waits a full week.
        #expect(local(try #require(clock.nextDue("weekly", after: time(2026, 2, 1, 12, 0, 0)))) == [2026, 2, 8, 0, 0, 0, 0])
        #expect(clock.nextDue("custom", after: now) == nil)
    }

    @Test func scaledClockForTests() {
        let clock = ScheduleClock(hourSeconds: 2)
        #expect(clock.nextDue("hourly", after: 101) == 102)
        #expect(clock.nextDue("hourly", after: 102) == 104)
        #expect(clock.nextDue("daily", after: 101) == 144)
    }
}
