import Foundation
import Testing
import SnapStore
import SnapStoreTestKit

/// A store on simulated devices, with a fixed clock and UUID so images are reproducible.
struct Fixture {
    var clock = IOClock()
    var store: SimulatedDevice
    var origin: SimulatedDevice
    var chunkSize: Int
    var options: StoreOptions

    init(originBytes: Int = 64 * 4096, storeBytes: Int = 512 * 4096, chunkSize: Int = 4096, cacheBytes: Int = 1 << 20) {
        self.chunkSize = chunkSize
        store = SimulatedDevice(path: "store", sizeBytes: UInt64(storeBytes), clock: clock, identity: 1)
        origin = SimulatedDevice(path: "origin", sizeBytes: UInt64(originBytes), clock: clock, identity: 2)
        options = StoreOptions()
        options.cacheSizeBytes = cacheBytes
        options.clock = { 1_700_000_000_000_000_000 }
        options.selfCheck = true
    }

    func initialize() throws -> Store<SimulatedDevice> {
        try Store.initialize(store: store, origin: origin, chunkSizeBytes: chunkSize,
                             volumeUUID: Array(0..<16), options: options)
    }

    func open() throws -> Store<SimulatedDevice> {
        try Store(store: store, origin: origin, options: options)
    }

    /// Devices holding the durable images only, as after power loss with everything synced.
    func reopenedFromDurable() throws -> Store<SimulatedDevice> {
        let s = SimulatedDevice(path: "store", image: store.durable, identity: 1)
        let o = SimulatedDevice(path: "origin", image: origin.durable, identity: 2)
        return try Store(store: s, origin: o, options: options)
    }
}

func pattern(_ seed: UInt64, _ count: Int) -> [UInt8] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: g.next()) }
}

/// Byte comparison that reports the first difference instead of printing megabytes.
@discardableResult
func expectSame(_ got: ArraySlice<UInt8>, _ expected: ArraySlice<UInt8>, _ what: @autoclosure () -> String,
                sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
    if got.elementsEqual(expected) { return true }
    let diff = zip(got.indices, expected.indices).first { got[$0.0] != expected[$0.1] }.map { $0.0 - got.startIndex }
    Issue.record("\(what()): \(got.count) bytes vs \(expected.count) expected, first difference at byte \(diff.map(String.init) ?? "end")",
                 sourceLocation: sourceLocation)
    return false
}

/// A fresh directory under the temporary directory for a test on real files, removed after
/// `body` however it ends.
func withScratchDirectory(_ name: String, _ body: (String) throws -> Void) throws {
    let dir = NSTemporaryDirectory() + "zuma-\(name)-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try body(dir)
}
