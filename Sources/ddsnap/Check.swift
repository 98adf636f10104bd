import ArgumentParser
import SnapStore
import VolumeServer
import VolumeInterface

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify every invariant of the store; exit 0 when clean, 1 when not.",
        discussion: """
            On a store file or device, check writes nothing. With --repair, it frees leaked chunks \
            (in use but referenced by nothing), and nothing else. When the newest commit is damaged \
            and the one before it opens and checks clean, --repair says what rolling back to it \
            would lose; --repair --roll-back does it.
            """)

    @OptionGroup var store: StoreOptionsGroup
    @Flag(help: "Repair what is safe to repair.") var repair = false
    @Flag(help: "With --repair: roll a damaged store back to its previous commit, losing what the newest commit held.")
    var rollBack = false

    func validate() throws {
        if rollBack && !repair { throw ValidationError("--roll-back goes with --repair") }
    }

    func run() throws {
        guard !isSocket(store.store) else {
            // A running server's store: checked (and repaired) by the server.
            if rollBack { throw ValidationError("--roll-back works on the store itself; stop its server first") }
            return try finish(try store.open().check(repair: repair))
        }
        let report: CheckReport
        do {
            report = try withDevices { s, o in try Store.checkWithoutWriting(store: s, origin: o, options: storeOptions) }
        } catch let e as StoreError {
            guard case .corrupt = e else { throw e }
            print("problem: \(e)")
            return try offerRollback()
        }
        if !report.problems.isEmpty && repair {
            printProblems(report)
            return try offerRollback()
        }
        if rollBack && report.problems.isEmpty { print("the newest commit opens and checks clean: nothing to roll back") }
        if repair && report.leakedChunkCount > 0 {
            return try finish(withDevices { s, o in try Store(store: s, origin: o, options: storeOptions).check(repair: true) })
        }
        try finish(report)
    }

    private var storeOptions: StoreOptions {
        var options = StoreOptions()
        options.checkOriginIdentity = store.origin == nil
        if let size = store.cacheSize { options.cacheSizeBytes = Int(size) }
        options.onEvent = { printError("ddsnap: \($0)") }
        return options
    }

    /// Opens the store and its origin under their locks for `body`; released when it returns.
    private func withDevices<T>(_ body: (FileDevice, FileDevice) throws -> T) throws -> T {
        do {
            let storeDevice = try FileDevice(path: store.store)
            let origin = try FileDevice(path: store.origin ?? Store.readSuperblock(storeDevice).originPath)
            return try body(storeDevice, origin)
        } catch StoreError.inUse(let path) {
            throw VolumeError.inUse(describeLockHolder(path))
        }
    }

    /// The newest commit is damaged: with --repair, say what a rollback to the previous commit
    /// loses; with --roll-back too, do it and check again.
    private func offerRollback() throws {
        guard repair else {
            print("NOT clean; `ddsnap check --repair` examines whether the previous commit is intact")
            throw ExitCode(1)
        }
        let plan: RollbackPlan
        do {
            plan = try withDevices { s, o in try Store.planRollback(store: s, origin: o, options: storeOptions) }
        } catch let e as StoreError {
            print("cannot roll back: \(e)")
            throw ExitCode(1)
        }
        print("commit \(plan.damaged.sequence) is damaged: \(plan.damage)")
        print("commit \(plan.previous.sequence), the one before it, opens and checks clean\(plan.previousLeakedChunks > 0 ? " (\(plan.previousLeakedChunks) leaked chunks, freed by the repair)" : "").")
        print("rolling back to it loses:")
        for line in plan.losses { print("  - \(line)") }
        guard rollBack else {
            print("nothing was changed; run `ddsnap check --repair --roll-back \(store.store)` to roll back")
            throw ExitCode(1)
        }
        let report = try withDevices { s, o in
            try Store.rollBack(plan, store: s)
            return try Store(store: s, origin: o, options: storeOptions).check(repair: true)
        }
        print("rolled back to commit \(plan.previous.sequence)")
        try finish(report)
    }

    private func printProblems(_ report: CheckReport) {
        for p in report.problems { print("problem: \(p)") }
    }

    private func finish(_ report: CheckReport) throws {
        printProblems(report)
        if report.leakedChunkCount > 0 {
            let shown = report.leakedChunks.prefix(20).map(String.init).joined(separator: ", ")
            print("\(report.repaired ? "freed" : "leaked") \(report.leakedChunkCount) chunks marked in use but referenced by nothing: \(shown)\(report.leakedChunkCount > 20 ? ", ..." : "")")
        }
        print("checked \(formatCount(report.nodes)) index blocks, \(formatCount(report.exceptions)) exceptions, \(formatCount(report.privateChunks)) private chunks, \(report.snapshots) snapshots: \(report.isClean ? "clean" : report.repaired && report.problems.isEmpty ? "repaired" : "NOT clean")")
        if !report.isClean && !(report.repaired && report.problems.isEmpty) { throw ExitCode(1) }
    }
}
