import ArgumentParser
import SnapStore

struct Priority: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "priority",
        abstract: "Set snapshot TAG's priority (-128...127); lower priorities are given up first, 127 never.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "The snapshot.", transform: parseTag) var tag: UInt64
    @Argument(help: "The priority, -128...127.") var priority: Int8

    func run() throws {
        try store.open().setPriority(tag: tag, priority)
        print("snapshot \(tag) priority \(priority)")
    }
}
