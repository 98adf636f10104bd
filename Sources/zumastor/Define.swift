import ArgumentParser
import VolumeManager

struct Define: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "define",
        abstract: "Define a volume, make one a master, set its snapshot schedule, or replicate it between hosts.",
        subcommands: [DefineVolume.self, DefineMaster.self, DefineSchedule.self, DefineTarget.self, DefineSource.self])
}

struct DefineVolume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "Define volume VOL on ORIGIN with the snapshot store SNAPSTORE, and start it.",
        discussion: """
            The origin keeps its data in place (make the filesystem on it before or after). With \
            --initialize the snapshot store is formatted; without, it must already be this origin's \
            store. The volume then appears as /dev/mapper/VOL.
            """)

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: "The origin device (or file).") var origin: String
    @Argument(help: "The snapshot store device (or file).") var snapstore: String
    @Flag(name: [.customShort("i"), .long], help: "Format the snapshot store.") var initialize = false
    @Flag(help: "Make the origin read as zeros (with --initialize; its data is lost).") var zero = false
    @Option(help: "Chunk size of a new store (default 16K).", transform: parseSize) var chunksize: UInt64?
    @Option(help: "Metadata cache size of the server (default 32M).", transform: parseSize) var cachesize: UInt64?
    @Option(help: "Where to mount the origin (default /var/run/zumastor/mount/VOL).") var mountpoint: String?
    @Option(help: "Mount options of the origin.") var mountopts: String?
    @Option(help: "Where to mount snapshots (default /var/run/zumastor/snapshot/VOL).") var snappath: String?
    @Option(name: .customLong("warn-fill"), help: "Warn in status and the log when the snapshot store is this full, in percent (default 90).")
    var warnFill: Int?

    func validate() throws {
        if chunksize != nil && !initialize { throw ValidationError("--chunksize applies only with --initialize") }
    }

    func run() throws {
        var d = VolumeDefinition(name: volume, origin: origin, store: snapstore)
        d.initialize = initialize
        d.chunkSizeBytes = chunksize.map { Int($0) }
        d.cacheSizeBytes = cachesize
        d.mountPoint = mountpoint
        d.mountOptions = mountopts
        d.snapshotDirectory = snappath
        d.zero = zero
        d.warnFillPercent = warnFill
        try manager().defineVolume(d)
        print(initialize ? "Successfully created and initialized volume '\(volume)'." : "Successfully defined volume '\(volume)'.")
    }
}

struct DefineMaster: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master",
        abstract: "Make volume VOL a master: its origin and snapshots are mounted and its schedule runs while it runs.",
        discussion: """
            The origin is mounted at /var/run/zumastor/mount/VOL (or --mountpoint of define volume), \
            each snapshot at /var/run/zumastor/snapshot/VOL/YYYY.MM.DD-HH.MM.SS. Defining a master \
            again changes its options.
            """)

    @Argument(help: "The volume's name.") var volume: String
    @Flag(name: .customLong("no-snapmount"), help: "Do not mount snapshots (--dotsnapshot then does nothing; --export and --samba publish the origin alone).")
    var noSnapmount = false
    @OptionGroup var nfs: NFSExportOptions
    @Flag(help: "Share the origin with Samba, its snapshots as previous versions (shadow_copy2), while the master runs.") var samba = false
    @Option(name: .customLong("samba-share"), help: ArgumentHelp("The Samba share's name (default: the volume's).", valueName: "name"))
    var sambaShare: String?
    @Flag(help: "Link .snapshot in the origin to the snapshot directory.") var dotsnapshot = false
    @Flag(name: .customLong("no-expedite"),
          help: "Freeze for snapshots without expediting the kernel's RCU grace periods (slower: about 45 ms of stalled writes per snapshot here, instead of under 1 ms).")
    var noExpedite = false

    func validate() throws {
        try nfs.validate()
        if sambaShare != nil && !samba { throw ValidationError("--samba-share applies only with --samba") }
    }

    func run() throws {
        let m = manager()
        var options = MasterOptions()
        options.snapmount = !noSnapmount
        options.export = nfs.export
        options.nfsServer = nfs.nfsServer
        options.nfsClients = try nfs.clients()
        options.samba = samba
        options.sambaShare = sambaShare
        options.dotsnapshot = dotsnapshot
        options.expediteFreeze = !noExpedite
        try m.defineMaster(volume, options: options)
        print("Volume '\(volume)' is a master, mounted at \(m.mountPoint(try m.config(volume))).")
    }
}

struct DefineSchedule: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Set how many snapshots of each kind master VOL keeps; hourly, daily, weekly and monthly ones are taken by themselves.",
        discussion: """
            Hourly snapshots are taken at the top of each hour, daily at midnight, weekly at \
            midnight before Monday, monthly on the 1st (local time); custom kinds are taken by \
            'zumastor snapshot VOL NAME' (from cron or a timer). With no option, the schedule is \
            cleared and existing snapshots are kept.
            """,
        helpNames: [.long])

    @Argument(help: "The volume's name.") var volume: String
    // `.unconditional`: "--hourly -1" reaches the count check instead of reading as a flag.
    @Option(name: [.customShort("h"), .long], parsing: .unconditional, help: "Hourly snapshots to keep.", transform: parseKeep) var hourly: Int?
    @Option(name: [.customShort("d"), .long], parsing: .unconditional, help: "Daily snapshots to keep.", transform: parseKeep) var daily: Int?
    @Option(name: [.customShort("w"), .long], parsing: .unconditional, help: "Weekly snapshots to keep.", transform: parseKeep) var weekly: Int?
    @Option(name: [.customShort("m"), .long], parsing: .unconditional, help: "Monthly snapshots to keep.", transform: parseKeep) var monthly: Int?
    @Option(name: [.customShort("c"), .long], parsing: .unconditionalSingleValue,
            help: ArgumentHelp("A custom kind and how many to keep (repeatable).", valueName: "name,N"))
    var custom: [String] = []

    /// The custom kinds, parsed and checked (so that a bad one shows this command's usage).
    private func customEntries() throws -> [ScheduleEntry] {
        try custom.map { c in
            let parts = c.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--custom takes NAME,N (got '\(c)')") }
            let kind = String(parts[0])
            if ["hourly", "daily", "weekly", "monthly"].contains(kind) {
                throw ValidationError("'\(kind)' is a scheduled kind, not a custom one: use --\(kind) \(parts[1])")
            }
            return ScheduleEntry(kind: kind, keep: try parseKeep(String(parts[1])))
        }
    }

    func validate() throws { _ = try customEntries() }

    func run() throws {
        var schedule: [ScheduleEntry] = []
        for (kind, keep) in [("hourly", hourly), ("daily", daily), ("weekly", weekly), ("monthly", monthly)] {
            if let keep { schedule.append(ScheduleEntry(kind: kind, keep: keep)) }
        }
        schedule += try customEntries()
        try manager().defineSchedule(volume, schedule)
        print(schedule.isEmpty ? "Cleared the schedule of '\(volume)'."
              : "Schedule of '\(volume)': " + schedule.map { "\($0.kind) \($0.keep)" }.joined(separator: ", ") + ".")
    }
}

struct Forget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Forget a volume, a replication target or a source.", subcommands: [ForgetVolume.self, ForgetTarget.self, ForgetSource.self])
}

struct ForgetVolume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "Stop volume VOL and forget its configuration; the devices keep their data.")

    @Argument(help: "The volume's name.") var volume: String

    func run() throws {
        try manager().forgetVolume(volume)
        print("Forgot volume '\(volume)'.")
    }
}

/// `--export`, `--nfs-server`, `--nfs-clients`: of a master, or of a replica with --mount-snap.
struct NFSExportOptions: ParsableArguments {
    @Flag(help: "Export over NFS while the volume runs: a master's origin (read-write), and the snapshot directory with each snapshot (read-only).")
    var export = false
    @Option(name: .customLong("nfs-server"), help: ArgumentHelp("The NFS server that exports: kernel, ganesha (nfs-ganesha, run by zumastor), or auto (the kernel's where it runs).", valueName: "auto|kernel|ganesha"))
    var nfsServer: NFSServerChoice = .auto
    @Option(name: .customLong("nfs-clients"), help: ArgumentHelp("Who may mount the exports: comma-separated *, host names, addresses or networks (default *).", valueName: "list"))
    var nfsClients: String?

    func validate() throws {
        if (nfsClients != nil || nfsServer != .auto) && !export { throw ValidationError("--nfs-server and --nfs-clients apply only with --export") }
    }

    func clients() throws -> [String] { try nfsClients.map { try MasterOptions.parseNFSClients($0) } ?? ["*"] }
}

extension NFSServerChoice: ExpressibleByArgument {}
