import ArgumentParser
import VolumeManager

/// `start` / `stop` take nothing (the whole service: every defined volume) or `volume VOL`.
struct Target: ParsableArguments {
    @Argument(help: ArgumentHelp("Nothing (every volume), or 'volume VOL'.", valueName: "volume VOL"))
    var words: [String] = []

    func validate() throws {
        guard words.isEmpty || (words.count == 2 && words[0] == "volume") else {
            throw ValidationError("expected nothing (every volume) or 'volume VOL', got '\(words.joined(separator: " "))'")
        }
    }

    var volume: String? { words.count == 2 ? words[1] : nil }

    /// Runs `one` on the named volume, or `all`, and prints what was done ("Started", ...).
    func run(_ done: String, one: (VolumeManager, String) throws -> Void, all: (VolumeManager) throws -> Void) throws {
        let m = manager()
        if let volume {
            try one(m, volume)
            print("\(done) volume '\(volume)'.")
        } else {
            try all(m)
            print("\(done) \(m.definedVolumes().count) volume(s).")
        }
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start every defined volume, or one: its server and its device /dev/mapper/VOL.")

    @OptionGroup var target: Target

    func run() throws {
        try target.run("Started", one: { try $0.startVolume($1) }, all: { try $0.startAll() })
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop every defined volume, or one (its server commits, detaches and exits).")

    @OptionGroup var target: Target

    func run() throws {
        try target.run("Stopped", one: { try $0.stopVolume($1) }, all: { try $0.stopAll() })
    }
}
