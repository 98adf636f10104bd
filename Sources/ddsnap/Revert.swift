import ArgumentParser
import SnapStore

struct Revert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revert",
        abstract: "Make the origin equal to snapshot TAG again; every snapshot keeps its contents.",
        discussion: "Unmount the origin first: its filesystem would not expect its blocks to change underneath it.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "The snapshot to revert to.", transform: parseTag) var tag: UInt64

    func run() throws {
        let changed = try store.open().revert(to: tag)
        print("reverted origin to snapshot \(tag) (\(formatCount(UInt64(changed))) chunks rewritten)")
    }
}
