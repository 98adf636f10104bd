import ArgumentParser
import Foundation
import SnapStore

struct Write: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy standard input into the origin or a snapshot (making it writable), then flush.")

    @OptionGroup var store: StoreOptionsGroup
    @Option(help: "Write into this snapshot instead of the origin.", transform: parseTag) var snapshot: UInt64?
    @Option(help: "Start here (bytes; K/M/G suffixes).", transform: parseSize) var offset: UInt64 = 0

    func run() throws {
        var ended = false
        let total = try store.open().write(snapshot: snapshot, offset: offset) { buffer in
            // Fill the buffer (a pipe returns short reads) so writes stay large.
            var filled = 0
            while !ended && filled < buffer.count {
                let n = Foundation.read(0, buffer.baseAddress! + filled, buffer.count - filled)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.io(operation: "read", path: "standard input", errno: errno)
                }
                if n == 0 { ended = true }
                filled += n
            }
            return filled
        }
        printError("wrote \(formatCount(total)) bytes at offset \(formatCount(offset)) of \(snapshot.map { "snapshot \($0)" } ?? "the origin")")
    }
}
