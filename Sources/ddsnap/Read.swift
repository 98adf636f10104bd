import ArgumentParser
import SnapStore

struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read", abstract: "Copy bytes of the origin or of a snapshot to standard output.")

    @OptionGroup var store: StoreOptionsGroup
    @Option(help: "Read this snapshot instead of the origin.", transform: parseTag) var snapshot: UInt64?
    @Option(help: "Start here (bytes; K/M/G suffixes).", transform: parseSize) var offset: UInt64 = 0
    @Option(help: "Bytes to read (default: to the end).", transform: parseSize) var length: UInt64?

    func run() throws {
        let out = Output()
        try store.open().read(snapshot: snapshot, offset: offset, length: length) { try out.write($0) }
        try out.flush()
    }
}
