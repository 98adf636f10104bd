import ArgumentParser
import Foundation
import SnapStore
import VolumeManager

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the defined volumes, or one.")

    @Argument(help: "A volume (default: all).") var volume: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let m = manager()
        let names = try volume.map { _ = try m.config($0); return [$0] } ?? m.definedVolumes()
        let statuses = try names.map { try m.status($0) }
        if json {
            let objects = statuses.map(jsonObject)
            let data = try JSONSerialization.data(withJSONObject: volume == nil ? objects as Any : objects[0] as Any,
                                                  options: [.prettyPrinted, .sortedKeys])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
            return
        }
        if statuses.isEmpty { print("No volumes defined.") }
        for s in statuses {
            let c = s.config
            print("Volume \(c.name): \(s.server.map { "running (server pid \($0.processID))" } ?? "stopped")")
            print("  origin:         \(c.origin)")
            print("  snapshot store: \(c.store)")
            if c.master { print("  role:           master, origin mounted at \(m.mountPoint(c))\(s.server == nil ? " (when running)" : "")") }
            for d in s.devices { print("  device:         \(d.name) -> \(d.loopDevice)\(d.writable ? "" : " (read-only)")") }
            if let st = s.store {
                print("  store usage:    \(st.percentUsed)% of \(formatCount(st.storeChunks * UInt64(st.chunkSizeBytes))) bytes, \(st.snapshotCount) snapshot(s)\(st.squashedCount > 0 ? ", \(st.squashedCount) squashed" : "")")
                if st.percentUsed >= st.warnFillPercent {
                    print("  warning:        the snapshot store is \(st.percentUsed)% full (warning level \(st.warnFillPercent)%)")
                }
            }
        }
    }

    private func jsonObject(_ s: VolumeStatus) -> [String: Any] {
        var o: [String: Any] = ["name": s.config.name, "origin": s.config.origin, "store": s.config.store,
                                "running": s.server != nil, "role": s.config.master ? "master" : "none"]
        if s.config.master { o["mountPoint"] = manager().mountPoint(s.config) }
        if let server = s.server { o["serverPID"] = Int(server.processID) }
        o["devices"] = s.devices.map { ["name": $0.name, "loopDevice": $0.loopDevice, "writable": $0.writable] }
        if let st = s.store {
            o["storeBytes"] = st.storeChunks * UInt64(st.chunkSizeBytes)
            o["percentUsed"] = st.percentUsed
            o["snapshotCount"] = st.snapshotCount
            o["squashedCount"] = st.squashedCount
        }
        o["snapshots"] = s.snapshots.map { ["id": $0.tag, "created": $0.createdNanoseconds, "sizeBytes": $0.originSizeBytes,
                                            "state": $0.squashed ? "squashed" : "normal"] as [String: Any] }
        return o
    }
}
