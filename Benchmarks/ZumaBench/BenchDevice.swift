// A FileDevice wrapper for benchmarks: counts syncs (so the plain-file reference can do the
// same number) and forwards everything else to the FileDevice. Syncs can be skipped while a
// benchmark builds its starting state (thousands of snapshots) quickly; measurements always
// run with syncs on.

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
    // The store takes the same paths as on a FileDevice: extent queries, holes, reflinks
    // between two bench devices where the filesystem has them, kernel copies, write-behind and
    // read-ahead hints.
    func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] { try file.dataExtents(in: range) }
    func writeZeros(at offset: UInt64, length: UInt64) throws { try file.writeZeros(at: offset, length: length) }
    func copy(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool {
        try file.copy(length, at: offset, to: (device as? BenchDevice)?.file ?? device, at: target)
    }
    func copyInKernel(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool {
        try file.copyInKernel(length, at: offset, to: (device as? BenchDevice)?.file ?? device, at: target)
    }
    func startWriteback(at offset: UInt64, length: UInt64) { file.startWriteback(at: offset, length: length) }
    func willRead(at offset: UInt64, length: UInt64) { file.willRead(at: offset, length: length) }
    func sync() throws {
        guard syncEnabled else { return }
        syncs += 1
        try file.sync()
    }
}
