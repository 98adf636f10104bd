// Copy-outs on real files: a chunk copied (read and written; a reflink where the filesystem
// has them), and a chunk that is a hole of the origin file, recorded without reading or
// writing data. The store's free chunks are filled with garbage first, so a hole copy that
// left them alone would show.

import Foundation
import Testing
@testable import SnapStore

@Suite struct FileCopyOutTests {
    /// An 8 MiB store file full of garbage, and a sparse origin file of `originBytes`.
    func garbageStoreAndSparseOrigin(in dir: String, originBytes: Int) throws -> (store: String, origin: String) {
        let (storePath, originPath) = (dir + "/store", dir + "/origin")
        FileManager.default.createFile(atPath: storePath, contents: Data(repeating: 0xAB, count: 8 << 20))
        FileManager.default.createFile(atPath: originPath, contents: nil)
        guard truncate(originPath, off_t(originBytes)) == 0 else { throw StoreError.io(operation: "truncate", path: originPath, errno: errno) }
        return (storePath, originPath)
    }

    @Test func copyOutsOnFilesKeepSnapshots() throws {
        try withScratchDirectory("copyout") { dir in
            let (storePath, originPath) = try garbageStoreAndSparseOrigin(in: dir, originBytes: 4 << 20)
            let cs = 16384
            let old = pattern(5, 8 * cs)
            let new = pattern(6, 24 * cs)
            let before = old + [UInt8](repeating: 0, count: 16 * cs)
            do {
                let s = try Store.initialize(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath), chunkSizeBytes: cs)
                // Chunks 0..<8 hold data, chunks 8..<24 stay holes of the origin file.
                try s.write(offset: 0, old)
                try s.flush()
                try s.createSnapshot(tag: 1)
                // Overwrite the data (copied in the kernel), then the holes (recorded as zeros).
                try new.withUnsafeBytes { all in
                    try s.write(originBatch: [(0, UnsafeRawBufferPointer(rebasing: all[0..<(8 * cs)]))], writeBehind: true)
                    try s.write(originBatch: [(UInt64(8 * cs), UnsafeRawBufferPointer(rebasing: all[(8 * cs)...]))])
                }
                try s.flush()
                expectSame(try s.read(snapshot: 1, offset: 0, length: 24 * cs)[...], before[...], "snapshot 1")
                expectSame(try s.read(offset: 0, length: 24 * cs)[...], new[...], "origin")
                #expect(try s.check().isClean)
                try s.close()
            }
            let r = try Store(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath))
            expectSame(try r.read(snapshot: 1, offset: 0, length: 24 * cs)[...], before[...], "snapshot 1 reopened")
            expectSame(try r.read(offset: 0, length: 24 * cs)[...], new[...], "origin reopened")
            #expect(try r.check().isClean)
        }
    }

    /// One copy-out run over data, holes and data again: the holes reach the store as holes
    /// (no data written there, the garbage under them gone), the data as data.
    @Test func aRunMixingDataAndHolesCopiesOnlyTheData() throws {
        try withScratchDirectory("copyout-mixed") { dir in
            let (storePath, originPath) = try garbageStoreAndSparseOrigin(in: dir, originBytes: 1 << 20)
            let cs = 16384
            let before = pattern(7, cs) + [UInt8](repeating: 0, count: 2 * cs) + pattern(8, cs)
            do {
                let s = try Store.initialize(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath), chunkSizeBytes: cs)
                // Chunk 0 and chunk 3 hold data; chunks 1 and 2 stay holes of the origin file.
                try s.write(offset: 0, pattern(7, cs))
                try s.write(offset: UInt64(3 * cs), pattern(8, cs))
                try s.flush()
                try s.createSnapshot(tag: 1)
                try s.write(offset: 0, pattern(9, 4 * cs))
                try s.flush()
                let epoch = try #require(try s.snapshot(tag: 1)).epoch
                for c in UInt64(0)..<4 {
                    let a = try #require(try s.exceptionsByChunk.find(Key(c, epoch)))
                    let range = a * UInt64(cs)..<(a + 1) * UInt64(cs)
                    #expect(try s.storeDevice.dataExtents(in: range).isEmpty == (c == 1 || c == 2), "store chunk of origin chunk \(c)")
                }
                expectSame(try s.read(snapshot: 1, offset: 0, length: 4 * cs)[...], before[...], "snapshot 1")
                try s.close()
            }
            let r = try Store(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath))
            expectSame(try r.read(snapshot: 1, offset: 0, length: 4 * cs)[...], before[...], "snapshot 1 reopened")
            #expect(try r.check().isClean)
        }
    }

    /// A copy-out of more data than a single-flush commit lists is copied in the kernel (no
    /// checksum needed): data and holes arrive as they are, and the snapshot keeps them.
    @Test func aLargeCopyOutCopiedInTheKernelKeepsTheSnapshot() throws {
        try withScratchDirectory("copyout-kernel") { dir in
            let (storePath, originPath) = try garbageStoreAndSparseOrigin(in: dir, originBytes: 8 << 20)
            let cs = 16384
            let chunks = 260
            #expect(UInt64(chunks * cs) > Store<FileDevice>.verifiedCommitBytesMax)
            // Chunks 0..<150 and 170..<260 hold data; 150..<170 stay holes of the origin file.
            let before = pattern(11, 150 * cs) + [UInt8](repeating: 0, count: 20 * cs) + pattern(12, 90 * cs)
            let new = pattern(13, chunks * cs)
            let epoch: UInt64
            do {
                let s = try Store.initialize(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath), chunkSizeBytes: cs)
                try s.write(offset: 0, Array(before[0..<(150 * cs)]))
                try s.write(offset: UInt64(170 * cs), Array(before[(170 * cs)...]))
                try s.flush()
                try s.createSnapshot(tag: 1)
                epoch = try #require(try s.snapshot(tag: 1)).epoch
                try new.withUnsafeBytes { try s.write(originBatch: [(0, $0)]) }
                try s.flush()
                for c in [UInt64(149), 150, 169, 170] {
                    let a = try #require(try s.exceptionsByChunk.find(Key(c, epoch)))
                    #expect(try s.storeDevice.dataExtents(in: a * UInt64(cs)..<(a + 1) * UInt64(cs)).isEmpty == (c == 150 || c == 169),
                            "store chunk of origin chunk \(c)")
                }
                expectSame(try s.read(snapshot: 1, offset: 0, length: chunks * cs)[...], before[...], "snapshot 1")
                expectSame(try s.read(offset: 0, length: chunks * cs)[...], new[...], "origin")
                #expect(try s.check().isClean)
                try s.close()
            }
            let r = try Store(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath))
            expectSame(try r.read(snapshot: 1, offset: 0, length: chunks * cs)[...], before[...], "snapshot 1 reopened")
            #expect(try r.check().isClean)
        }
    }
}
