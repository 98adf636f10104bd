import ArgumentParser
import VolumeManager

struct Key: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Print this host's key fingerprint, for --key of 'define target' and 'define source' on its peers.",
        discussion: "The key is made at the first 'zumastor start' (or here, when there is none yet) and kept in /etc/zumastor, readable by root only.")

    func run() throws {
        print(try manager().hostIdentity().fingerprint)
    }
}
