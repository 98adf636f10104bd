import ArgumentParser
import SnapStore

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete snapshot TAG, freeing the chunks no other snapshot needs.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "The snapshot to delete.", transform: parseTag) var tag: UInt64

    func run() throws {
        let freed = try store.open().deleteSnapshot(tag: tag)
        print("deleted snapshot \(tag), freed \(formatCount(freed)) chunks")
    }
}
