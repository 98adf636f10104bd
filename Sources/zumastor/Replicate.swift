import ArgumentParser
import Foundation
import Replication
import VolumeManager

struct Replicate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicate",
        abstract: "Replicate VOL now: to its target HOST, from its source (no second argument, on a replica), or to a local replica at PATH.",
        discussion: """
            With HOST (a target defined with 'define target'), a new snapshot of VOL is sent as the \
            chunks changed since the newest snapshot HOST holds; an interrupted transfer is \
            resumed first. On a replica, 'zumastor replicate VOL' asks its source for its newest \
            snapshot. Both return once the replica holds the snapshot and print its id; \
            --nowait leaves the cycle to run in the background (its result is in the volume's \
            replication log and in status). Any other PATH is a local replica's store \
            or its server's control socket: the snapshot is applied in this process. Snapshots \
            taken for replication are of kind 'replication': not mounted, and deleted once no \
            target needs them as a base.
            """)

    @Argument(help: "The volume's name.") var volume: String
    @Argument(help: ArgumentHelp("A target host, or a local replica's store or socket (a path).", valueName: "host|path"))
    var target: String?
    @Option(help: "The local replica's origin (when PATH is a store).") var origin: String?
    @Flag(help: "Return once the replica holds the snapshot (the default).") var wait = false
    @Flag(help: "Start the cycle and return at once.") var nowait = false
    @Flag(help: "No progress on standard error.") var quiet = false

    func validate() throws {
        if wait && nowait { throw ValidationError("--wait and --nowait exclude each other") }
        if origin != nil && target == nil { throw ValidationError("--origin is for a local replica's store") }
    }

    func run() throws {
        let m = manager()
        let c = try m.config(volume)
        // A defined target's host goes over the network; anything else is a local replica's path.
        let remote = target.map { t in c.targets.contains { $0.matches(t) } } ?? true
        if origin != nil && remote { throw ValidationError("--origin is for a local replica's store, not the target host \(target!)") }
        if nowait {
            guard remote else { throw ValidationError("--nowait is for a target host or a source") }
            try detach()
            return
        }
        let progress = quiet ? nil : Progress(label: "replicate", interactive: isatty(2) == 1)
        guard let target else {
            report(try m.pull(volume, progress: progress), from: true)
            return
        }
        guard !remote else {
            report(try m.replicate(volume, toHost: target, progress: progress), from: false)
            return
        }
        guard FileManager.default.fileExists(atPath: target) else {
            throw ZumastorError.invalid("volume '\(volume)' has no target \(target)\(c.targets.isEmpty ? "" : " (its targets: \(c.targets.map { "\($0.endpoint)" }.joined(separator: ", ")))"), and \(target) doesn't exist as a local replica's store or socket")
        }
        let replica = try VolumeManager.openReplica(target, origin: origin)
        let key = URL(fileURLWithPath: target).resolvingSymlinksInPath().path
        let outcome = try m.replicate(volume, to: replica, target: key, progress: progress)
        let t = outcome.trailer
        print("Replicated snapshot \(outcome.snapshot.tag) of '\(volume)' to \(target) \(outcome.base.map { "as changes since snapshot \($0)" } ?? "in full"): \(t.dataChunks) chunk(s) of data, \(t.zeroChunks) zero.")
        guard outcome.problems.isEmpty else {
            Zumastor.fail("snapshot \(outcome.snapshot.tag) was replicated, but: " + outcome.problems.joined(separator: "; "))
        }
    }

    private func report(_ outcomes: [CycleOutcome], from: Bool) {
        for o in outcomes {
            print("\(from ? "Received" : "Replicated") snapshot \(o.snapshot) of '\(volume)'\(from ? "" : " to \(target!)"): \(o.message)")
        }
        if let last = outcomes.last { print(last.snapshot) }
    }

    /// --nowait: the same command with --wait, in a process of its own.
    private func detach() throws {
        let pid = try manager().replicateInBackground(volume, host: target)
        print("Replication of '\(volume)'\(target.map { " to \($0)" } ?? " from its source") started (pid \(pid)); see zumastor status \(volume).")
    }
}
