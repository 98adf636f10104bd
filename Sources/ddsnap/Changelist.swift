import ArgumentParser
import SnapStore

struct Changelist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "changelist",
        abstract: "Print the chunks that may differ between FROM and TO, one chunk number per line, in order.",
        discussion: "FROM and TO are snapshot tags or 'origin'. Metadata only: no data is read.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "A tag or 'origin'.", transform: parseSide) var from: StoreSide
    @Argument(help: "A tag or 'origin'.", transform: parseSide) var to: StoreSide

    func run() throws {
        let s = try store.open()
        let out = Output()
        try s.changedChunks(from: from, to: to) { chunk in try out.line(String(chunk)) }
        try out.flush()
    }
}
