import ArgumentParser
import VolumeManager

/// `start` / `stop` take nothing (the whole service: every defined volume), `volume VOL` or
/// `master VOL` (the master's mounts and schedule only; the volume keeps running), or
/// `target VOL HOST` and `source VOL` (a replication relationship's periodic cycles).
struct Target: ParsableArguments {
    @Argument(help: ArgumentHelp("Nothing (every volume), 'volume VOL', 'master VOL', 'target VOL HOST' or 'source VOL'.",
                                 valueName: "volume|master|target|source VOL [HOST]"))
    var words: [String] = []

    func validate() throws {
        let ok = words.isEmpty || (words.count == 2 && ["volume", "master", "source"].contains(words[0]))
            || (words.count == 3 && words[0] == "target")
        guard ok else {
            throw ValidationError("expected nothing (every volume), 'volume VOL', 'master VOL', 'target VOL HOST' or 'source VOL', got '\(words.joined(separator: " "))'")
        }
    }

    /// Runs the verb on what the words name and prints what was done ("Started", ...).
    func run(_ done: String, volume: (VolumeManager, String) throws -> Void, master: (VolumeManager, String) throws -> Void,
             all: (VolumeManager) throws -> Void) throws {
        let m = manager()
        let starting = done == "Started"
        switch words.first {
        case "target":
            try m.setStarted(words[1], target: words[2], starting)
            print("\(done) the periodic replication of '\(words[1])' to \(words[2]).")
        case "source":
            try m.setStarted(words[1], target: nil, starting)
            print("\(done) the periodic replication of '\(words[1])' from its source.")
        case "volume":
            try volume(m, words[1])
            print("\(done) volume '\(words[1])'.")
        case "master":
            try master(m, words[1])
            print("\(done) master '\(words[1])'.")
        default:
            try all(m)
            print("\(done) \(m.definedVolumes().count) volume(s).")
        }
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start every defined volume (the service), one volume, or one master's mounts and schedule.")

    @OptionGroup var target: Target

    func run() throws {
        try target.run("Started", volume: { try $0.startVolume($1) }, master: { try $0.startMaster($1) }, all: { try $0.startAll() })
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop every defined volume (the service), one volume, or one master's mounts and schedule.")

    @OptionGroup var target: Target

    func run() throws {
        try target.run("Stopped", volume: { try $0.stopVolume($1) }, master: { try $0.stopMaster($1) }, all: { try $0.stopAll() })
    }
}
