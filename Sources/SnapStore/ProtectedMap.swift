// The in-memory "already protected" bitmap: bit c set means origin chunk c already has an
// exception at least as new as the newest live snapshot, so a write to c goes straight to the
// origin without touching the index. Creating a snapshot clears every bit in O(1): bits live
// in pages stamped with a generation, and a page from an older generation reads as all zero.

struct ProtectedMap {
    private static let wordsPerPage = 512  // 32768 chunks per page
    private var words: [UInt64] = []
    private var pageGeneration: [UInt32] = []
    private var generation: UInt32 = 1

    init(chunks: UInt64) { resize(chunks: chunks) }

    mutating func resize(chunks: UInt64) {
        let wordCount = Int((chunks + 63) / 64)
        let pages = (wordCount + ProtectedMap.wordsPerPage - 1) / ProtectedMap.wordsPerPage
        words = Array(words.prefix(pages * ProtectedMap.wordsPerPage))
        words.append(contentsOf: [UInt64](repeating: 0, count: pages * ProtectedMap.wordsPerPage - words.count))
        pageGeneration = Array(pageGeneration.prefix(pages))
        pageGeneration.append(contentsOf: [UInt32](repeating: 0, count: pages - pageGeneration.count))
    }

    @inline(__always) func contains(_ chunk: UInt64) -> Bool {
        let w = Int(chunk >> 6)
        guard w < words.count, pageGeneration[w / ProtectedMap.wordsPerPage] == generation else { return false }
        return words[w] & (1 << (chunk & 63)) != 0
    }

    mutating func insert(_ chunk: UInt64) {
        let w = Int(chunk >> 6)
        guard w < words.count else { return }
        let page = w / ProtectedMap.wordsPerPage
        if pageGeneration[page] != generation {
            let base = page * ProtectedMap.wordsPerPage
            for i in base..<(base + ProtectedMap.wordsPerPage) { words[i] = 0 }
            pageGeneration[page] = generation
        }
        words[w] |= 1 << (chunk & 63)
    }

    mutating func remove(_ chunk: UInt64) {
        let w = Int(chunk >> 6)
        guard w < words.count, pageGeneration[w / ProtectedMap.wordsPerPage] == generation else { return }
        words[w] &= ~(1 << (chunk & 63))
    }

    /// Forgets every bit in constant time.
    mutating func removeAll() {
        generation &+= 1
        if generation == 0 {
            // Wrapped: stamps could collide with the new generation; clear them for real.
            for i in pageGeneration.indices { pageGeneration[i] = 0 }
            generation = 1
        }
    }
}
