// Opens arbitrary store images: the superblock slots, the trees, the bitmap, the verified runs
// and the copy-out log, as `open` reads them. The first input byte steers the harness:
//   bit 0: re-seal first (every metadata block's checksum and every verified run's CRC made
//          right again, so that mutations reach the parsers behind the checksums);
//   bit 1: after a clean open and check, change the store (a write with copy-outs, a snapshot
//          made and one deleted, a close) and open and check it again.
// The rest is the image (4 KiB chunks). Open, reads, check and the changes must each succeed
// or throw; never crash, hang or touch bytes outside a device (AddressSanitizer is on, and an
// out-of-range device access stops the run). A store that checked clean must check clean
// after the changes.
// ZUMA_STORE_FUZZ_CORPUS=DIR makes the seed corpus there and exits instead.

import FuzzDriver
import Foundation
import SnapStore

let chunkBytes = 4096

/// A device in memory that stops the run on any access outside it.
final class MemoryDevice: BlockDevice {
    let path: String
    var bytes: [UInt8]
    let identity: DeviceIdentity
    var sizeBytes: UInt64 { UInt64(bytes.count) }

    init(path: String, bytes: [UInt8], inode: UInt64) {
        (self.path, self.bytes) = (path, bytes)
        identity = DeviceIdentity(kind: .regularFile, device: 42, inode: inode)
    }

    private func range(_ offset: UInt64, _ count: Int) -> Range<Int> {
        guard offset <= UInt64(bytes.count), UInt64(count) <= UInt64(bytes.count) - offset else {
            fatalError("\(path): access of \(count) bytes at \(offset) outside its \(bytes.count) bytes")
        }
        return Int(offset)..<(Int(offset) + count)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let r = range(offset, buffer.count)
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[r])) }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        let r = range(offset, buffer.count)
        bytes.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[r]).copyMemory(from: buffer) }
    }

    func sync() throws {}

    func resize(to sizeBytes: UInt64) throws {
        guard sizeBytes <= 64 << 20 else { throw StoreError.invalidArgument("the fuzzer's devices stay below 64 MiB") }
        if Int(sizeBytes) < bytes.count { bytes.removeLast(bytes.count - Int(sizeBytes)) } else {
            bytes += [UInt8](repeating: 0, count: Int(sizeBytes) - bytes.count)
        }
    }
}

func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
func u32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }

/// The block types (docs/FORMAT.md "Checksums") and their salts.
let superblockType: UInt16 = 0x5342
let blockTypes: Set<UInt16> = [0x4E44, 0x424D, 0x4249]
func salt(_ type: UInt16) -> UInt32 { UInt32(type) &* 0x9E37_79B9 }

func seal(_ image: inout [UInt8], block base: Int, length: Int, type: UInt16) {
    let sum = image.withUnsafeBytes { crc32c(UnsafeRawBufferPointer(rebasing: $0[(base + 4)..<(base + length)]), seed: salt(type)) }
    put32(&image, base, sum)
}

/// Every metadata block sealed again, then each superblock's verified runs, then the superblocks.
func reseal(_ image: inout [UInt8]) {
    for base in stride(from: 2 * chunkBytes, to: image.count, by: chunkBytes) where blockTypes.contains(u16(image, base + 4)) {
        seal(&image, block: base, length: chunkBytes, type: u16(image, base + 4))
    }
    for slot in 0..<2 {
        let base = slot * chunkBytes
        guard u16(image, base + 4) == superblockType else { continue }
        let indexBlocks = Int(min(u32(image, base + 236), 352)), runs = Int(min(u32(image, base + 244), 256))
        for r in 0..<runs {
            let at = base + 1280 + 8 * indexBlocks + 16 * r
            guard at + 16 <= base + chunkBytes else { break }
            let first = u64(image, at), count = UInt64(u32(image, at + 8))
            guard first < UInt64(image.count / chunkBytes), count <= UInt64(image.count / chunkBytes) - first else { continue }
            let range = (Int(first) * chunkBytes)..<(Int(first + count) * chunkBytes)
            put32(&image, at + 12, image.withUnsafeBytes { crc32c(UnsafeRawBufferPointer(rebasing: $0[range])) })
        }
        seal(&image, block: base, length: chunkBytes, type: superblockType)
    }
}

let originImage = [UInt8](repeating: 0x5A, count: 16 * chunkBytes)

func openStore(_ image: [UInt8]) throws -> (Store<MemoryDevice>, MemoryDevice) {
    var options = StoreOptions()
    options.checkOriginIdentity = false
    options.clock = { 1_750_000_000_000_000_000 }
    let store = MemoryDevice(path: "store", bytes: image, inode: 1)
    let s = try Store(store: store, origin: MemoryDevice(path: "origin", bytes: originImage, inode: 2), options: options)
    return (s, store)
}

/// Reads a little of every snapshot and the origin, then checks; true when clean.
func exercise(_ s: Store<MemoryDevice>) throws -> Bool {
    for snap in try s.snapshots.prefix(8) {
        _ = try s.read(snapshot: snap.tag, offset: 0, length: Int(min(snap.originSizeBytes, UInt64(4 * chunkBytes))))
    }
    _ = try s.read(offset: 0, length: chunkBytes)
    return try s.check().isClean
}

func change(_ s: Store<MemoryDevice>) throws {
    let tags = try s.snapshots.map(\.tag)
    try s.write(offset: UInt64(chunkBytes), [UInt8](repeating: 0xC3, count: 2 * chunkBytes))
    try s.createSnapshot(tag: (tags.max() ?? 0) &+ 1)
    if let first = tags.first { try s.deleteSnapshot(tag: first) }
    try s.write(offset: 0, [UInt8](repeating: 0x3C, count: chunkBytes))
    try s.close()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 + 2 * chunkBytes, size <= 1 + 256 * chunkBytes else { return 0 }
    let control = data[0]
    var image = Array(UnsafeBufferPointer(start: data + 1, count: (size - 1) / chunkBytes * chunkBytes))
    if control & 1 != 0 { reseal(&image) }
    guard let (s, device) = try? openStore(image), let clean = try? exercise(s) else { return 0 }
    guard clean, control & 2 != 0 else { try? s.close(); return 0 }
    do { try change(s) } catch { return 0 }
    do {
        let (again, _) = try openStore(device.bytes)
        guard try exercise(again) else { fatalError("a store that checked clean does not after a write, a snapshot, a delete and a close") }
    } catch {
        fatalError("a store that checked clean does not open and check after a write, a snapshot, a delete and a close: \(error)")
    }
    return 0
}

/// The seed corpus: a new store, one with a history and a clean close, and one left open
/// after copy-outs (a copy-out log and verified runs in its superblock).
func makeCorpus(_ directory: String) throws {
    func emit(_ name: String, _ image: [UInt8], control: UInt8 = 3) throws {
        try Data([control] + image).write(to: URL(fileURLWithPath: directory + "/" + name))
    }
    var options = StoreOptions()
    options.clock = { 1_750_000_000_000_000_000 }
    func fresh() throws -> (Store<MemoryDevice>, MemoryDevice) {
        let store = MemoryDevice(path: "store", bytes: [UInt8](repeating: 0, count: 192 * chunkBytes), inode: 1)
        let s = try Store.initialize(store: store, origin: MemoryDevice(path: "origin", bytes: originImage, inode: 2),
                                     chunkSizeBytes: chunkBytes, volumeUUID: Array(0x10...0x1F), originPath: "/fuzz/origin", options: options)
        return (s, store)
    }
    var (s, store) = try fresh()
    try s.close()
    try emit("new", store.bytes)
    (s, store) = try fresh()
    try s.createSnapshot(tag: 1, name: "first")
    try s.write(offset: 0, [UInt8](repeating: 1, count: 3 * chunkBytes))
    try s.createSnapshot(tag: 2, priority: 5)
    try s.write(snapshot: 1, offset: UInt64(5 * chunkBytes), [UInt8](repeating: 2, count: 100))
    try s.createSnapshot(tag: 3)
    try s.write(offset: UInt64(2 * chunkBytes), [UInt8](repeating: 3, count: 2 * chunkBytes))
    try s.deleteSnapshot(tag: 2)
    try s.close()
    try emit("history", store.bytes)
    let (open, openDevice) = try openStore(store.bytes)
    try open.write(offset: UInt64(8 * chunkBytes), [UInt8](repeating: 4, count: 2 * chunkBytes))
    try open.flush()
    try emit("copy-out-log", openDevice.bytes)
    try emit("copy-out-log-unsealed", openDevice.bytes, control: 0)
}

@_cdecl("store_fuzz_main")
public func storeFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    fuzzMain(argc, argv, corpus: ("ZUMA_STORE_FUZZ_CORPUS", makeCorpus)) { fuzz($0, $1) }
}
