import ArgumentParser
import SnapStore

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the store's usage; with --size, what each snapshot holds; with --state, test one snapshot.",
        discussion: "--state TAG exits 0 when the snapshot is normal, 1 when it does not exist, 2 when it was squashed.")

    @OptionGroup var store: StoreOptionsGroup
    @Option(help: ArgumentHelp("Space per snapshot: 'all' or a tag (a bare --size means all).", valueName: "TAG"))
    var size: String?
    @Option(help: "Exit 0 (normal), 1 (absent) or 2 (squashed) for this snapshot.", transform: parseTag)
    var state: UInt64?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if let size, size != "all" { _ = try parseTag(size) }
    }

    func run() throws {
        let s = try store.open()
        if let state {
            guard let snap = try s.snapshot(tag: state) else {
                if !json { print("snapshot \(state) doesn't exist") } else { try printJSON(["tag": state, "state": "absent"]) }
                throw ExitCode(1)
            }
            if json { try printJSON(["tag": state, "state": snap.squashed ? "squashed" : "normal"]) } else {
                print("snapshot \(state) is \(snap.squashed ? "squashed" : "normal")")
            }
            if snap.squashed { throw ExitCode(2) }
            return
        }
        let st = try s.status()
        var chosen: [SnapshotInfo] = []
        if let size {
            if size == "all" { chosen = try s.snapshots() } else {
                let tag = try parseTag(size)
                guard let snap = try s.snapshot(tag: tag) else { throw StoreError.snapshotMissing(tag) }
                chosen = [snap]
            }
        }
        let usages = try chosen.map { try s.usage(tag: $0.tag) }
        let cs = UInt64(st.chunkSizeBytes)
        if json {
            var out: [String: Any] = [
                "store": s.location, "origin": st.originPath, "volumeUUID": st.volumeUUID,
                "chunkSizeBytes": st.chunkSizeBytes, "storeChunks": st.storeChunks, "storeBytes": st.storeChunks * cs,
                "usedChunks": st.usedChunks, "freeChunks": st.freeChunks, "percentUsed": st.percentUsed,
                "warnFillPercent": st.warnFillPercent, "originSizeBytes": st.originSizeBytes,
                "snapshotCount": st.snapshotCount, "squashedCount": st.squashedCount,
                "exceptionChunks": st.exceptionCount, "privateChunks": st.privateChunkCount,
                "metadataChunks": st.metadataChunks, "commitSequence": st.sequence,
            ]
            if size != nil {
                out["snapshots"] = zip(chosen, usages).map { snapshotJSON($0, usage: $1, chunkSize: st.chunkSizeBytes) }
            }
            try printJSON(out)
            return
        }
        print("Snapshot store \(s.location) (volume \(st.volumeUUID))")
        print("Origin:        \(st.originPath), \(formatCount(st.originSizeBytes)) bytes")
        print("Chunk size:    \(formatCount(cs)) bytes")
        print("Store size:    \(formatCount(st.storeChunks)) chunks, \(formatCount(st.storeChunks * cs)) bytes")
        print("Used:          \(formatCount(st.usedChunks)) chunks (\(st.percentUsed)%): \(formatCount(st.exceptionCount)) copied out, \(formatCount(st.privateChunkCount)) private, \(formatCount(st.metadataChunks)) metadata")
        print("Free:          \(formatCount(st.freeChunks)) chunks, \(formatCount(st.freeChunks * cs)) bytes")
        print("Snapshots:     \(formatCount(UInt64(st.snapshotCount)))\(st.squashedCount > 0 ? " (\(st.squashedCount) squashed)" : "")")
        if st.percentUsed >= st.warnFillPercent {
            print("Warning:       the store is \(st.percentUsed)% full (warning level \(st.warnFillPercent)%)")
        }
        if size != nil {
            print("")
            print(pad(["Snapshot", "Created", "Unique", "Shared", "State"], widths: [10, 21, 16, 16, 0]))
            for (snap, u) in zip(chosen, usages) {
                print(pad([String(snap.tag), formatTime(snap.createdNanoseconds), formatCount(u.uniqueChunks * cs),
                           formatCount(u.sharedChunks * cs), snap.squashed ? "squashed" : "normal"], widths: [10, 21, 16, 16, 0]))
            }
        }
    }
}
