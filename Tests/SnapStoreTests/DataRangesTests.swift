// `dataRanges` on real files: every chunk of a snapshot that holds data must be listed (a full
// replication sends only listed chunks and zeros for the rest), including chunks the origin
// file no longer has (copied out before a shrink) and a writable snapshot's private chunks
// over holes of the origin; a chunk that is a hole everywhere is not listed. Each answer is
// checked for several windows, so the window's offset cannot hide a mistake.

import Foundation
import Testing
import SnapStore

@Suite struct DataRangesTests {
    @Test func listsEveryChunkThatHoldsData() throws {
        try withScratchDirectory("ranges") { dir in
            let (storePath, originPath) = (dir + "/store", dir + "/origin")
            let cs = 4096, chunks = 64
            FileManager.default.createFile(atPath: storePath, contents: nil)
            #expect(truncate(storePath, 8 << 20) == 0)
            FileManager.default.createFile(atPath: originPath, contents: nil)
            #expect(truncate(originPath, off_t(chunks * cs)) == 0)
            let s = try Store.initialize(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath), chunkSizeBytes: cs)

            try s.write(offset: 0, pattern(1, 8 * cs))
            try s.write(offset: UInt64(40 * cs), pattern(2, 8 * cs))
            try s.flush()
            _ = try s.createSnapshot(tag: 1)
            // Copy-outs for snapshot 1.
            try s.write(offset: UInt64(44 * cs), pattern(3, 2 * cs))
            _ = try s.createSnapshot(tag: 2)
            // Private chunks of snapshot 2: one over origin data, one over a hole of the origin.
            try s.write(snapshot: 2, offset: UInt64(5 * cs), pattern(4, cs))
            try s.write(snapshot: 2, offset: UInt64(20 * cs), pattern(5, cs))
            // Shrink: chunks 32..<64 now live only in the store, for both snapshots.
            try s.resizeOrigin(to: UInt64(32 * cs))
            try s.flush()

            let windows: [Range<UInt64>] = [0..<64, 3..<50, 41..<45, 20..<21, 46..<64]
            for tag in [nil, 1, 2] as [UInt64?] {
                let size = tag == nil ? 32 * cs : chunks * cs
                let bytes = try s.read(snapshot: tag, offset: 0, length: size)
                for w in windows {
                    let listed = Set(try s.dataRanges(snapshot: tag, chunks: w).flatMap { Array($0) })
                    #expect(listed.allSatisfy { w.contains($0) }, "snapshot \(String(describing: tag)): listed outside \(w)")
                    for c in w where Int(c) * cs < size {
                        let piece = bytes[(Int(c) * cs)..<(Int(c + 1) * cs)]
                        if piece.contains(where: { $0 != 0 }) {
                            #expect(listed.contains(c), "snapshot \(String(describing: tag)): chunk \(c) holds data but is not listed in \(w)")
                        }
                    }
                    // A hole of the origin file that no snapshot copied.
                    if w.contains(30) { #expect(!listed.contains(30), "snapshot \(String(describing: tag)): chunk 30 is a hole everywhere") }
                }
            }
            // Snapshot 2's private chunk over a hole is listed for it alone.
            #expect(try s.dataRanges(snapshot: 2, chunks: 20..<21) == [20..<21])
            #expect(try s.dataRanges(snapshot: 1, chunks: 20..<21).isEmpty)
            #expect(try s.check().isClean)
            try s.close()
        }
    }
}
