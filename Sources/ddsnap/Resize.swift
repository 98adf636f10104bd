import ArgumentParser
import SnapStore

struct Resize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize",
        abstract: "Grow or shrink the origin and/or the snapshot store.",
        discussion: """
            Shrinking the origin keeps every snapshot's contents (what they need is copied out first); \
            shrink the filesystem on it before. Shrinking the store is refused while chunks past the new \
            end are in use.
            """)

    @OptionGroup var store: StoreOptionsGroup
    @Option(name: .customLong("origin-size"), help: "New origin size.", transform: parseSize) var originSize: UInt64?
    @Option(name: .customLong("snapshot"), help: "New snapshot store size.", transform: parseSize) var storeSize: UInt64?

    func validate() throws {
        guard originSize != nil || storeSize != nil else { throw ValidationError("give --origin-size SIZE and/or --snapshot SIZE") }
    }

    func run() throws {
        let s = try store.open()
        if let originSize {
            let st = try s.resizeOrigin(to: originSize)
            print("origin is now \(formatCount(st.originSizeBytes)) bytes")
        }
        if let storeSize {
            let st = try s.resizeStore(to: storeSize)
            print("snapshot store is now \(formatCount(st.storeChunks * UInt64(st.chunkSizeBytes))) bytes")
        }
    }
}
