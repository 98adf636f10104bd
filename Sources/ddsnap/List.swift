import ArgumentParser
import SnapStore

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List snapshots, oldest first.")

    @OptionGroup var store: StoreOptionsGroup
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let s = try store.open()
        let snapshots = try s.snapshots()
        if json {
            let chunkSize = try s.status().chunkSizeBytes
            try printJSON(snapshots.map { snapshotJSON($0, chunkSize: chunkSize) })
            return
        }
        let out = Output()
        try out.line(pad(["Snapshot", "Created", "Size", "Usecount", "Priority", "State", "Name"]))
        for snap in snapshots {
            try out.line(pad([String(snap.tag), formatTime(snap.createdNanoseconds), formatCount(snap.originSizeBytes),
                              String(snap.usecount), String(snap.priority), snap.squashed ? "squashed" : "normal", snap.name]))
        }
        try out.flush()
    }
}

/// Fixed-width columns.
func pad(_ fields: [String], widths: [Int] = [10, 21, 16, 10, 10, 10, 0]) -> String {
    var line = ""
    for (i, f) in fields.enumerated() {
        let w = i < widths.count ? widths[i] : 0
        line += f + String(repeating: " ", count: max(w - f.count, 1))
    }
    while line.last == " " { line.removeLast() }
    return line
}
