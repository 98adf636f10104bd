import ArgumentParser
import SnapStore

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Take snapshot TAG of the origin.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "The new snapshot's tag.", transform: parseTag) var tag: UInt64
    @Option(help: "A name to keep with the snapshot (up to 63 bytes).") var name: String = ""
    @Option(help: "Priority, -128...127 (127: never given up when the store fills).") var priority: Int8 = 0

    func run() throws {
        let info = try store.open().createSnapshot(tag: tag, name: name, priority: priority)
        print("created snapshot \(info.tag)")
    }
}
