// The in-memory "already protected" set: chunk c in it means c already has an exception at
// least as new as the newest live snapshot, so a write to c goes straight to the origin
// without touching the index. It is a cache of what the index says, so it may forget: bits
// live in 4 KiB pages created only where chunks are written, at most `pagesMax` of them
// (8 MiB); past that everything is forgotten and relearned with one lookup per chunk.
// Memory is therefore bounded whatever the volume size. Creating a snapshot empties it.

struct ProtectedMap {
    private static let wordsPerPage = 512       // 32,768 chunks per page
    private static let pagesMax = 2048
    private var pages: [Int: [UInt64]] = [:]

    init() {}

    @inline(__always) private static func place(_ chunk: UInt64) -> (page: Int, word: Int, bit: UInt64) {
        let w = Int(chunk >> 6)
        return (w / wordsPerPage, w % wordsPerPage, 1 << (chunk & 63))
    }

    func contains(_ chunk: UInt64) -> Bool {
        let p = ProtectedMap.place(chunk)
        guard let page = pages[p.page] else { return false }
        return page[p.word] & p.bit != 0
    }

    mutating func insert(_ chunk: UInt64) {
        let p = ProtectedMap.place(chunk)
        if pages[p.page] == nil {
            if pages.count >= ProtectedMap.pagesMax { pages.removeAll() }
            pages[p.page] = [UInt64](repeating: 0, count: ProtectedMap.wordsPerPage)
        }
        pages[p.page]![p.word] |= p.bit
    }

    mutating func remove(_ chunk: UInt64) {
        let p = ProtectedMap.place(chunk)
        guard pages[p.page] != nil else { return }
        pages[p.page]![p.word] &= ~p.bit
    }

    /// Forgets every chunk (a new snapshot protects nothing yet). Bounded by `pagesMax`.
    mutating func removeAll() { pages.removeAll() }
}
