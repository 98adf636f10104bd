import ArgumentParser
import SnapStore

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify every invariant of the store; exit 0 when clean, 1 when not.",
        discussion: "With --repair, frees leaked chunks (in use but referenced by nothing); nothing else is changed.")

    @OptionGroup var store: StoreOptionsGroup
    @Flag(help: "Repair what is safe to repair.") var repair = false

    func run() throws {
        let report = try store.open().check(repair: repair)
        for p in report.problems { print("problem: \(p)") }
        if !report.leakedChunks.isEmpty {
            let shown = report.leakedChunks.prefix(20).map(String.init).joined(separator: ", ")
            print("\(report.repaired ? "freed" : "leaked") \(report.leakedChunks.count) chunks marked in use but referenced by nothing: \(shown)\(report.leakedChunks.count > 20 ? ", ..." : "")")
        }
        print("checked \(formatCount(report.nodes)) index blocks, \(formatCount(report.exceptions)) exceptions, \(formatCount(report.privateChunks)) private chunks, \(report.snapshots) snapshots: \(report.isClean ? "clean" : report.repaired && report.problems.isEmpty ? "repaired" : "NOT clean")")
        if !report.isClean && !(report.repaired && report.problems.isEmpty) { throw ExitCode(1) }
    }
}
