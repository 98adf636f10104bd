// Copy-outs on real files: a chunk copied (read and written; a reflink where the filesystem
// has them), and a chunk that is a hole of the origin file, recorded without reading or
// writing data. The store's free chunks are filled with garbage first, so a hole copy that
// left them alone would show.

import Foundation
import Testing
import SnapStore

@Suite struct FileCopyOutTests {
    @Test func copyOutsOnFilesKeepSnapshots() throws {
        try withScratchDirectory("copyout") { dir in
            let (storePath, originPath) = (dir + "/store", dir + "/origin")
            let cs = 16384
            // A store full of garbage, and a sparse origin of 4 MiB.
            FileManager.default.createFile(atPath: storePath, contents: Data(repeating: 0xAB, count: 8 << 20))
            FileManager.default.createFile(atPath: originPath, contents: nil)
            #expect(truncate(originPath, 4 << 20) == 0)
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
}
