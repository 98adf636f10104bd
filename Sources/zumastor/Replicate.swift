import ArgumentParser
import Foundation
import Replication
import VolumeManager

struct Replicate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicate",
        abstract: "Take a snapshot of VOL and replicate it to the local replica TARGET (only the chunks changed since the last snapshot both hold).",
        discussion: """
            TARGET is a replica's snapshot store (file or block device; --origin names its origin \
            when the store's record of it is not the one to use) or the control socket of the \
            server running it. An empty replica takes a full copy and becomes a replica of VOL; \
            after that each replication sends the delta from the newest snapshot the two share. \
            The replica keeps its last complete snapshot until the new one is whole. The snapshot \
            is of kind 'replication': not mounted, and deleted once no target needs it as a base.
            """)

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: "The replica: its store, or its server's control socket.") var target: String
    @Option(help: "The replica's origin (when TARGET is a store).") var origin: String?
    @Flag(help: "No progress on standard error.") var quiet = false

    func run() throws {
        let m = manager()
        _ = try m.config(volume)
        let replica = try VolumeManager.openReplica(target, origin: origin)
        let key = URL(fileURLWithPath: target).resolvingSymlinksInPath().path
        let progress = quiet ? nil : Progress(label: "replicate", interactive: isatty(2) == 1)
        let outcome = try m.replicate(volume, to: replica, target: key, progress: progress)
        let t = outcome.trailer
        print("Replicated snapshot \(outcome.snapshot.tag) of '\(volume)' to \(target) \(outcome.base.map { "as changes since snapshot \($0)" } ?? "in full"): \(t.dataChunks) chunk(s) of data, \(t.zeroChunks) zero.")
        guard outcome.problems.isEmpty else {
            Zumastor.fail("snapshot \(outcome.snapshot.tag) was replicated, but: " + outcome.problems.joined(separator: "; "))
        }
    }
}
