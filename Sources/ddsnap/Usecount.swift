import ArgumentParser
import SnapStore

struct Usecount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usecount",
        abstract: "Add DELTA (may be negative) to snapshot TAG's persistent use count and print the new count.",
        discussion: "A snapshot in use is squashed rather than deleted when the store fills.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "The snapshot.", transform: parseTag) var tag: UInt64
    @Argument(help: "The change, e.g. 1 or -1.") var delta: Int64

    func run() throws {
        print(try store.open().adjustUsecount(tag: tag, by: delta))
    }
}
