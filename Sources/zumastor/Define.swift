import ArgumentParser
import VolumeManager

struct Define: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Define a volume, or make one a master.", subcommands: [DefineVolume.self, DefineMaster.self])
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
    @Flag(help: "Format the snapshot store.") var initialize = false
    @Option(help: "Chunk size of a new store (default 16K).", transform: parseSize) var chunksize: UInt64?
    @Option(help: "Metadata cache size of the server (default 32M).", transform: parseSize) var cachesize: UInt64?
    @Option(help: "Where to mount the origin (default /var/run/zumastor/mount/VOL).") var mountpoint: String?
    @Option(help: "Mount options of the origin.") var mountopts: String?
    @Option(help: "Where to mount snapshots (default /var/run/zumastor/snapshot/VOL).") var snappath: String?

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
        try manager().defineVolume(d)
        print(initialize ? "Successfully created and initialized volume '\(volume)'." : "Successfully defined volume '\(volume)'.")
    }
}

struct DefineMaster: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master",
        abstract: "Make volume VOL a master: its origin is mounted (at /var/run/zumastor/mount/VOL unless --mountpoint) while it runs.")

    @Argument(help: "The volume's name.") var volume: String

    func run() throws {
        let m = manager()
        try m.defineMaster(volume)
        print("Volume '\(volume)' is a master, mounted at \(m.mountPoint(try m.config(volume))).")
    }
}

struct Forget: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forget a volume.", subcommands: [ForgetVolume.self])
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
