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
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start every defined volume, or one: its server and its device /dev/mapper/VOL.")

    @OptionGroup var target: Target

    func run() throws {
        let m = manager()
        if let volume = target.volume {
            try m.startVolume(volume)
            print("Started volume '\(volume)'.")
        } else {
            try m.startAll()
            print("Started \(m.definedVolumes().count) volume(s).")
        }
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop every defined volume, or one (its server commits, detaches and exits).")

    @OptionGroup var target: Target

    func run() throws {
        let m = manager()
        if let volume = target.volume {
            try m.stopVolume(volume)
            print("Stopped volume '\(volume)'.")
        } else {
            try m.stopAll()
            print("Stopped \(m.definedVolumes().count) volume(s).")
        }
    }
}
