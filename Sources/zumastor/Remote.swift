// Replication between hosts: `define target|source`, `forget target|source`, and the
// replication service's process (`zumastor replicator`, started by `zumastor start`).

import ArgumentParser
import Foundation
import VolumeManager

struct RelationshipOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The peer host's key fingerprint (what 'zumastor key' prints there).", valueName: "fingerprint"))
    var key: String
    @Option(help: ArgumentHelp("Seconds between automatic cycles (none: only by hand).", valueName: "seconds"))
    var period: Int?
    @Option(help: ArgumentHelp("The volume's name on the peer (default: the same name).", valueName: "volume"))
    var name: String?
}

struct DefineTarget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "target",
        abstract: "Replicate volume VOL to HOST: its snapshots are sent there (every --period seconds, or by 'zumastor replicate VOL HOST').",
        discussion: """
            HOST is a name or an address (IPv6 in brackets with a port: [2001:db8::1]:11235); the \
            default port is 11235. The connection is TLS 1.3 with both keys pinned: HOST must show \
            the key given with --key, and HOST's volume must name this host's key in its \
            'define source'. Defining the same HOST again changes its options.
            """)

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: ArgumentHelp("The replica host.", valueName: "host[:port]")) var host: String
    @OptionGroup var options: RelationshipOptions
    @Option(help: ArgumentHelp("Bytes per second on the wire at most (K, M, G suffixes: 10M).", valueName: "rate"), transform: parseSize)
    var ratelimit: UInt64?
    @Option(help: ArgumentHelp("zstd[:LEVEL] (1-19, default 3), lzma[:LEVEL] (0-9) or none: records are sent compressed where that makes them smaller.",
                               valueName: "method"))
    var compress = "zstd"
    @Flag(help: "Send the chunks as they are (--compress none).") var uncompressed = false

    func validate() throws {
        if uncompressed && compress != "zstd" { throw ValidationError("--uncompressed and --compress exclude each other") }
    }

    func run() throws {
        var d = TargetDefinition(endpoint: host, key: options.key)
        d.remoteName = options.name
        d.period = options.period
        d.rateBytesPerSecond = ratelimit
        d.compression = uncompressed ? "none" : compress
        try manager().defineTarget(volume, d)
        print("Volume '\(volume)' replicates to \(host)\(options.period.map { " every \($0) s" } ?? " when asked").")
    }
}

struct DefineSource: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source",
        abstract: "Make volume VOL a replica of the same volume on HOST (its --name there), which may send it snapshots.",
        discussion: """
            The replica's origin takes only what HOST sends, checked against the snapshots it holds; \
            its newest snapshot is mounted read-only at /var/run/zumastor/mount/VOL. With --period, \
            the replica asks HOST for a new snapshot that often once 'zumastor start source VOL' ran.
            """)

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: ArgumentHelp("The upstream host.", valueName: "host[:port]")) var host: String
    @OptionGroup var options: RelationshipOptions
    @Flag(name: .customLong("mount-snap"), help: "Mount and link received snapshots as on a master.") var mountSnap = false
    @OptionGroup var nfs: NFSExportOptions

    func validate() throws {
        try nfs.validate()
        if nfs.export && !mountSnap { throw ValidationError("--export applies to a replica with --mount-snap (it exports the mounted snapshots)") }
    }

    func run() throws {
        var d = SourceDefinition(endpoint: host, key: options.key)
        d.remoteName = options.name
        d.period = options.period
        d.mountSnap = mountSnap
        d.export = nfs.export
        d.nfsServer = nfs.nfsServer
        d.nfsClients = try nfs.clients()
        try manager().defineSource(volume, d)
        print("Volume '\(volume)' is a replica of \(options.name ?? volume) on \(host).")
    }
}

struct ForgetTarget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "target", abstract: "Stop replicating volume VOL to HOST; the snapshots held for it go.")

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: ArgumentHelp("The target host.", valueName: "host[:port]")) var host: String

    func run() throws {
        try manager().forgetTarget(volume, host)
        print("Volume '\(volume)' no longer replicates to \(host).")
    }
}

struct ForgetSource: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source", abstract: "Stop receiving snapshots into volume VOL; its data stays.")

    @Argument(help: "The volume's name.") var volume: String

    func run() throws {
        try manager().forgetSource(volume)
        print("Volume '\(volume)' no longer has a source.")
    }
}

struct Replicator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicator",
        abstract: "Run the replication service (started by 'zumastor start'; not for direct use).",
        shouldDisplay: false)

    func run() throws {
        try manager().runReplicator()
    }
}
