// A FileDevice wrapper for benchmarks: counts syncs (so the plain-file reference can do the
// same number), and can skip them while a benchmark builds its starting state (thousands
// of snapshots) quickly. Measurements always run with syncs on.

import SnapStore

final class BenchDevice: BlockDevice {
    let file: FileDevice
    var syncEnabled = true
    private(set) var syncs = 0

    init(path: String) throws { file = try FileDevice(path: path) }

    var path: String { file.path }
    var sizeBytes: UInt64 { file.sizeBytes }
    var identity: DeviceIdentity { file.identity }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws { try file.read(into: buffer, at: offset) }
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws { try file.write(buffer, at: offset) }
    func resize(to sizeBytes: UInt64) throws { try file.resize(to: sizeBytes) }
    func sync() throws {
        guard syncEnabled else { return }
        syncs += 1
        try file.sync()
    }
}
