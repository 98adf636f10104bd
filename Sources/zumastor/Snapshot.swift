import ArgumentParser
import SnapStore
import Foundation
import VolumeManager

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Take a snapshot of VOL now (of KIND for the rotation; none: manual, kept until deleted) and print its id.",
        discussion: """
            The origin's filesystem is frozen while the snapshot is taken. On a master the snapshot \
            is then mounted at /var/run/zumastor/snapshot/VOL/YYYY.MM.DD-HH.MM.SS, KIND.0 names it, \
            and the snapshots the schedule no longer keeps are unmounted and deleted.
            """)

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: "hourly, daily, weekly, monthly or a custom kind of the schedule.") var kind: String?

    func run() throws {
        let outcome = try manager().snapshot(volume, kinds: kind.map { [$0] } ?? [])
        print(outcome.snapshot.tag)
        // The fill warning (outcome.warnings) is printed with every command's (Zumastor.main).
        guard outcome.problems.isEmpty else {
            Zumastor.fail("snapshot \(outcome.snapshot.tag) was taken, but: " + outcome.problems.joined(separator: "; "))
        }
    }
}

/// VOL SNAP, the arguments of delete and revert.
struct VolumeSnapshotArguments: ParsableArguments {
    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: "The snapshot id.") var snap: UInt64
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete snapshot SNAP of VOL (unmounted first); a manual snapshot stays until this.")

    @OptionGroup var target: VolumeSnapshotArguments

    func run() throws {
        let freed = try manager().deleteSnapshot(target.volume, tag: target.snap)
        print("Deleted snapshot \(target.snap) of '\(target.volume)' (\(freed) chunk(s) freed).")
    }
}

struct Revert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revert",
        abstract: "Make the origin of VOL equal to snapshot SNAP (stop the master first).")

    @OptionGroup var target: VolumeSnapshotArguments

    func run() throws {
        let chunks = try manager().revert(target.volume, to: target.snap)
        print("Reverted volume '\(target.volume)' to snapshot \(target.snap) (\(chunks) chunk(s) rewritten).")
    }
}

struct Resize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize",
        abstract: "Resize the origin (master stopped; grow the device first) and/or the snapshot store of VOL.")

    @Argument(help: "The volume's name.") var volume: String
    @Option(parsing: .unconditional, help: "New origin size (K, M, G, T).", transform: parseSize) var origin: UInt64?
    @Option(parsing: .unconditional, help: "New snapshot store size (K, M, G, T).", transform: parseSize) var snapshot: UInt64?
    @Flag(help: "Shrink the origin below the size its filesystem claims (that filesystem is cut off).") var force = false

    func validate() throws {
        if origin == nil && snapshot == nil { throw ValidationError("give --origin SIZE and/or --snapshot SIZE") }
    }

    func run() throws {
        let status = try manager().resize(volume, origin: origin, store: snapshot, force: force)
        print("Volume '\(volume)': origin \(formatCount(status.originSizeBytes)) bytes, snapshot store \(formatCount(status.storeChunks * UInt64(status.chunkSizeBytes))) bytes.")
    }
}

struct Remount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remount",
        abstract: "Move the origin mount point of VOL to DIR and/or change its mount options ('-' keeps either).")

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: "The new mount point, or '-'.") var directory: String
    @Argument(help: "The new mount options ('' for none), or '-'.") var options: String = "-"

    func run() throws {
        let m = manager()
        try m.remount(volume, mountPoint: directory == "-" ? nil : directory, options: options == "-" ? nil : options)
        print("Volume '\(volume)' mounts at \(m.mountPoint(try m.config(volume))).")
    }
}

/// The schedule agent of a running master (started by `zumastor start`).
struct Agent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the snapshot schedule of master VOL (started by zumastor start).", shouldDisplay: false)

    @Argument(help: "The volume's name.") var volume: String

    func run() throws { try manager().runAgent(volume) }
}
