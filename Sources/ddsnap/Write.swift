import ArgumentParser
import Foundation
import SnapStore

struct Write: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write",
        abstract: "Copy standard input into the origin or a snapshot (making it writable), then flush.")

    @OptionGroup var store: StoreOptionsGroup
    @Option(help: "Write into this snapshot instead of the origin.", transform: parseTag) var snapshot: UInt64?
    @Option(help: "Start here (bytes; K/M/G suffixes).", transform: parseSize) var offset: UInt64 = 0

    func run() throws {
        var ended = false
        let total = try store.open().write(snapshot: snapshot, offset: offset) { buffer in
            if ended { return 0 }
            let filled = try readFull(0, buffer, path: "standard input")
            ended = filled < buffer.count
            return filled
        }
        printError("wrote \(formatCount(total)) bytes at offset \(formatCount(offset)) of \(snapshot.map { "snapshot \($0)" } ?? "the origin")")
    }
}
