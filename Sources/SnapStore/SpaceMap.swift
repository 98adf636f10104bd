// The allocator: one bit per store chunk (1 = in use), held in memory and persisted as bitmap
// blocks reached from bitmap index blocks listed in the superblock (docs/FORMAT.md).
//
// Crash rule: a chunk freed in the running transaction is already clear in the bitmap that
// this transaction will commit, but it is "pinned" (never handed out again) until that commit
// is durable, because the previous commit may still reference it. A chunk allocated and freed
// within one transaction was never committed and is reusable at once.

final class SpaceMap {
    let blockSize: Int
    private(set) var chunkCount: UInt64
    private(set) var words: [UInt64]
    private(set) var freeCount: UInt64
    private(set) var pinned: Set<UInt64> = []
    private(set) var allocatedThisTransaction: Set<UInt64> = []
    private var cursor: UInt64 = 0
    /// Allocations, and frees that are changes of their own, so far: the commit tells from
    /// them whether anything but logged copy-outs changed the map.
    private(set) var allocations = 0
    private(set) var changeFrees = 0

    /// Current on-disk address of each bitmap block (0: not yet written).
    var blockAddresses: [UInt64]
    var indexAddresses: [UInt64]
    /// Bitmap blocks and index blocks changed in this transaction.
    var dirtyBlocks: Set<Int> = []
    var dirtyIndex: Set<Int> = []
    /// Those already given a fresh address in this transaction.
    var shadowedBlocks: Set<Int> = []
    var shadowedIndex: Set<Int> = []

    var bitsPerBlock: Int { (blockSize - Format.headerBytes) * 8 }
    var wordsPerBlock: Int { (blockSize - Format.headerBytes) / 8 }
    var addressesPerIndex: Int { (blockSize - Format.headerBytes) / 8 }
    var blockCount: Int { blockAddresses.count }

    static func blockCount(chunks: UInt64, blockSize: Int) -> Int {
        let bits = UInt64((blockSize - Format.headerBytes) * 8)
        return Int((chunks + bits - 1) / bits)
    }
    static func indexCount(blocks: Int, blockSize: Int) -> Int {
        let per = (blockSize - Format.headerBytes) / 8
        return (blocks + per - 1) / per
    }

    /// A fresh map for a new store: only the superblock slots in use, every block dirty.
    init(chunkCount: UInt64, blockSize: Int) {
        self.blockSize = blockSize
        self.chunkCount = chunkCount
        let blocks = SpaceMap.blockCount(chunks: chunkCount, blockSize: blockSize)
        words = [UInt64](repeating: 0, count: blocks * ((blockSize - Format.headerBytes) / 8))
        freeCount = chunkCount
        blockAddresses = [UInt64](repeating: 0, count: blocks)
        indexAddresses = [UInt64](repeating: 0, count: SpaceMap.indexCount(blocks: blocks, blockSize: blockSize))
        dirtyBlocks = Set(0..<blocks)
        dirtyIndex = Set(0..<indexAddresses.count)
        for slot in Format.superblockSlots { markAllocated(slot) }
    }

    /// A map loaded from disk.
    init(chunkCount: UInt64, blockSize: Int, words: [UInt64], blockAddresses: [UInt64], indexAddresses: [UInt64]) {
        self.blockSize = blockSize
        self.chunkCount = chunkCount
        self.words = words
        self.blockAddresses = blockAddresses
        self.indexAddresses = indexAddresses
        var used: UInt64 = 0
        for w in words { used += UInt64(w.nonzeroBitCount) }
        freeCount = chunkCount - used
    }

    @inline(__always) func isAllocated(_ chunk: UInt64) -> Bool {
        words[Int(chunk >> 6)] & (1 << (chunk & 63)) != 0
    }

    /// Chunks that can be handed out now.
    var reusable: UInt64 { freeCount - UInt64(pinned.count) }

    private func touch(_ chunk: UInt64) {
        dirtyBlocks.insert(Int(chunk / UInt64(bitsPerBlock)))
    }

    func markAllocated(_ chunk: UInt64) {
        precondition(chunk < chunkCount && !isAllocated(chunk))
        words[Int(chunk >> 6)] |= 1 << (chunk & 63)
        freeCount -= 1
        touch(chunk)
    }

    /// Hands out a free, unpinned chunk (next fit from the cursor), or throws.
    func allocate() throws -> UInt64 { try allocateRun(upTo: 1).lowerBound }

    /// How far past the first free chunk `allocateRun` looks for a free extent long enough.
    static let runSearchWords = 1024

    /// Hands out up to `count` free, unpinned chunks that follow each other (at least one), or
    /// throws like `allocate`. Next fit from the cursor, preferring an extent that takes all
    /// `count`: the search goes past shorter ones for `runSearchWords` words of the map, then
    /// settles for the longest it saw (the first of equals). Consecutive origin chunks copied
    /// out so land on consecutive store chunks even when frees have fragmented the map, and a
    /// later read of the snapshot takes them with one read.
    func allocateRun(upTo count: Int) throws -> Range<UInt64> {
        precondition(count >= 1)
        // Callers reserve space before they change anything (Store.ensureSpace), so running
        // dry here means the reserve arithmetic is wrong; the handle is poisoned, not the disk.
        guard reusable > 0 else { throw StoreError.corrupt("space map ran out of chunks in the middle of an operation (metadata reserve exceeded)") }
        let wordCount = Int((chunkCount + 63) / 64)
        var best: Range<UInt64>?
        var at = cursor < chunkCount ? cursor : 0
        var wrapped = false
        var scannedFrom: UInt64?
        while true {
            guard let first = nextUnpinnedFree(from: at) else {
                // Nothing free from here to the end: once more from the start.
                if wrapped { break }
                (wrapped, at) = (true, 0)
                continue
            }
            if wrapped, let from = scannedFrom, first >= from { break }  // back where the search began
            if scannedFrom == nil { scannedFrom = first }
            let run = freeRun(from: first, upTo: count)
            if run.count > (best?.count ?? 0) { best = run }
            if run.count == count { break }
            let scanned = wrapped ? (chunkCount - scannedFrom!) + first : first - scannedFrom!
            if scanned / 64 >= UInt64(min(Self.runSearchWords, wordCount)) { break }
            at = run.upperBound
        }
        guard let run = best else { preconditionFailure("space map: \(reusable) reusable chunks but none found") }
        for c in run {
            markAllocated(c)
            allocatedThisTransaction.insert(c)
        }
        allocations += run.count
        cursor = run.upperBound
        return run
    }

    /// The first free chunk at or after `from` that is not pinned (nil: none before the end).
    private func nextUnpinnedFree(from: UInt64) -> UInt64? {
        let wordCount = Int((chunkCount + 63) / 64)
        var w = Int(from >> 6)
        var free = w < wordCount ? ~words[w] & (~0 << (from & 63)) : 0
        while w < wordCount {
            if w == wordCount - 1 && chunkCount % 64 != 0 { free &= (1 << (chunkCount % 64)) - 1 }
            while free != 0 {
                let chunk = UInt64(w) * 64 + UInt64(free.trailingZeroBitCount)
                free &= free - 1
                if !pinned.contains(chunk) { return chunk }
            }
            w += 1
            if w < wordCount { free = ~words[w] }
        }
        return nil
    }

    /// The free, unpinned chunks from `first` (free) on, at most `count` of them.
    private func freeRun(from first: UInt64, upTo count: Int) -> Range<UInt64> {
        var end = first + 1
        while end - first < UInt64(count), end < chunkCount, !isAllocated(end), pinned.isEmpty || !pinned.contains(end) {
            end += 1
        }
        return first..<end
    }

    /// Frees `chunk`. `bookkeeping`: part of another change, not a change of its own (a
    /// node's old address when it is shadowed, an allocation given back at once).
    func free(_ chunk: UInt64, bookkeeping: Bool = false) {
        precondition(chunk < chunkCount && isAllocated(chunk), "free of unallocated chunk \(chunk)")
        if !bookkeeping { changeFrees += 1 }
        precondition(!Format.superblockSlots.contains(chunk))
        words[Int(chunk >> 6)] &= ~(1 << (chunk & 63))
        freeCount += 1
        touch(chunk)
        if allocatedThisTransaction.remove(chunk) == nil { pinned.insert(chunk) }
    }

    /// After a durable copy-out log commit: what this transaction allocated so far is
    /// referenced by a durable superblock now, so a later free must pin it too. Nothing else
    /// changes: the bitmap on disk is still the last checkpoint's, whose chunks stay pinned.
    func logCommitted() {
        allocatedThisTransaction.removeAll(keepingCapacity: true)
    }

    /// After a durable checkpoint commit: pinned chunks become reusable.
    func committed() {
        pinned.removeAll(keepingCapacity: true)
        allocatedThisTransaction.removeAll(keepingCapacity: true)
        dirtyBlocks.removeAll(keepingCapacity: true)
        dirtyIndex.removeAll(keepingCapacity: true)
        shadowedBlocks.removeAll(keepingCapacity: true)
        shadowedIndex.removeAll(keepingCapacity: true)
    }

    /// Gives every dirty bitmap block and index block a fresh address (copy on write). Each
    /// allocation may dirty more bitmap blocks; loop until nothing new is dirty. Terminates:
    /// each block is shadowed at most once per transaction.
    func shadowForCommit() throws {
        var changed = true
        while changed {
            changed = false
            for i in dirtyBlocks.sorted() where !shadowedBlocks.contains(i) {
                let fresh = try allocate()
                if blockAddresses[i] != 0 { free(blockAddresses[i]) }
                blockAddresses[i] = fresh
                shadowedBlocks.insert(i)
                dirtyIndex.insert(i / addressesPerIndex)
                changed = true
            }
            for j in dirtyIndex.sorted() where !shadowedIndex.contains(j) {
                let fresh = try allocate()
                if indexAddresses[j] != 0 { free(indexAddresses[j]) }
                indexAddresses[j] = fresh
                shadowedIndex.insert(j)
                changed = true
            }
        }
    }

    /// How many fresh chunks the next commit may need for bitmap and index shadows, at most.
    var commitReserve: UInt64 {
        UInt64(max(dirtyBlocks.count - shadowedBlocks.count, 0) + indexAddresses.count + 4)
    }

    func encodeBlock(_ i: Int, into block: UnsafeMutableRawBufferPointer, sequence: UInt64) {
        for k in 0..<block.count { block[k] = 0 }
        BlockHeader(type: .bitmap, address: blockAddresses[i], sequence: sequence,
                    count: UInt32(i)).encode(into: block)
        let base = i * wordsPerBlock
        for k in 0..<wordsPerBlock { block.putU64(words[base + k], Format.headerBytes + k * 8) }
        BlockHeader.seal(block, type: .bitmap)
    }

    func encodeIndex(_ j: Int, into block: UnsafeMutableRawBufferPointer, sequence: UInt64) {
        for k in 0..<block.count { block[k] = 0 }
        let first = j * addressesPerIndex
        let n = min(addressesPerIndex, blockAddresses.count - first)
        BlockHeader(type: .bitmapIndex, address: indexAddresses[j], sequence: sequence,
                    count: UInt32(n)).encode(into: block)
        for k in 0..<n { block.putU64(blockAddresses[first + k], Format.headerBytes + k * 8) }
        BlockHeader.seal(block, type: .bitmapIndex)
    }

    /// Grows or shrinks the map to `newCount` chunks. Shrinking requires every chunk at or
    /// past `newCount` to be free and unpinned (the caller checks and reports).
    func resize(to newCount: UInt64) {
        changeFrees += 1
        let oldBlocks = blockCount
        let blocks = SpaceMap.blockCount(chunks: newCount, blockSize: blockSize)
        if newCount < chunkCount {
            for c in newCount..<chunkCount { precondition(!isAllocated(c) && !pinned.contains(c)) }
            freeCount -= chunkCount - newCount
        } else {
            freeCount += newCount - chunkCount
        }
        chunkCount = newCount
        words = Array(words.prefix(blocks * wordsPerBlock))
        words.append(contentsOf: [UInt64](repeating: 0, count: blocks * wordsPerBlock - words.count))
        // Bitmap blocks that fall off the end: their chunks are free once this commits.
        for i in blocks..<max(oldBlocks, blocks) where blockAddresses[i] != 0 { free(blockAddresses[i]) }
        if blocks < oldBlocks {
            blockAddresses.removeLast(oldBlocks - blocks)
            dirtyBlocks = dirtyBlocks.filter { $0 < blocks }
            shadowedBlocks = shadowedBlocks.filter { $0 < blocks }
        }
        for i in oldBlocks..<max(oldBlocks, blocks) {
            blockAddresses.append(0)
            dirtyBlocks.insert(i)
        }
        // The last block's tail bits past the end are zero (free) and never handed out.
        if blocks > 0 { dirtyBlocks.insert(blocks - 1) }
        let indexNeeded = SpaceMap.indexCount(blocks: blocks, blockSize: blockSize)
        while indexAddresses.count > indexNeeded {
            let a = indexAddresses.removeLast()
            if a != 0 { free(a) }
            dirtyIndex.remove(indexAddresses.count)
            shadowedIndex.remove(indexAddresses.count)
        }
        while indexAddresses.count < indexNeeded {
            indexAddresses.append(0)
            dirtyIndex.insert(indexAddresses.count - 1)
        }
        if cursor >= newCount { cursor = 0 }
    }

    /// The highest allocated or pinned chunk, if any.
    func highestInUse() -> UInt64? {
        var w = words.count - 1
        while w >= 0 {
            if words[w] != 0 { return UInt64(w) * 64 + 63 - UInt64(words[w].leadingZeroBitCount) }
            w -= 1
        }
        return nil
    }
}

// MARK: Loading

extension SpaceMap {
    /// The map the commit `sb` recorded: its index blocks and bitmap blocks read and verified
    /// (checksum, address, sequence, counts, no bit past the end, both superblock slots in use).
    static func load<Device: BlockDevice>(from store: Device, _ sb: Superblock) throws -> SpaceMap {
        let bs = Int(sb.chunkSizeBytes)
        let blocks = SpaceMap.blockCount(chunks: sb.storeChunkCount, blockSize: bs)
        guard Int(sb.bitmapBlockCount) == blocks,
              sb.indexAddresses.count == SpaceMap.indexCount(blocks: blocks, blockSize: bs) else {
            throw StoreError.corrupt("superblock: \(sb.bitmapBlockCount) bitmap blocks and \(sb.indexAddresses.count) index blocks do not fit \(sb.storeChunkCount) chunks")
        }
        let per = (bs - Format.headerBytes) / 8
        var buffer = [UInt8](repeating: 0, count: bs)
        var blockAddresses: [UInt64] = []
        for (j, address) in sb.indexAddresses.enumerated() {
            guard address >= 2, address < sb.storeChunkCount else {
                throw StoreError.corrupt("superblock: bitmap index block \(j) at \(address) is outside the store")
            }
            try store.read(into: &buffer, at: address * UInt64(bs))
            try buffer.withUnsafeBytes { b in
                let h = try BlockHeader.verify(b, expect: .bitmapIndex, address: address, maxSequence: sb.sequence)
                let n = min(per, blocks - j * per)
                guard Int(h.count) == n else { throw StoreError.corrupt("block \(address) (bitmap index block \(j)): holds \(h.count) addresses, expected \(n)") }
                for k in 0..<n {
                    let a = b.u64(Format.headerBytes + k * 8)
                    guard a >= 2, a < sb.storeChunkCount else {
                        throw StoreError.corrupt("block \(address) (bitmap index block \(j)): bitmap block \(j * per + k) at \(a) is outside the store")
                    }
                    blockAddresses.append(a)
                }
                guard b.isZero((Format.headerBytes + n * 8)..<bs) else { throw StoreError.corrupt("block \(address) (bitmap index block \(j)): reserved bytes are not zero") }
            }
        }
        var words = [UInt64]()
        words.reserveCapacity(blocks * per)
        for (i, address) in blockAddresses.enumerated() {
            try store.read(into: &buffer, at: address * UInt64(bs))
            try buffer.withUnsafeBytes { b in
                let h = try BlockHeader.verify(b, expect: .bitmap, address: address, maxSequence: sb.sequence)
                guard h.count == UInt32(i) else { throw StoreError.corrupt("block \(address) (bitmap block): records index \(h.count), expected \(i)") }
                for k in 0..<per { words.append(b.u64(Format.headerBytes + k * 8)) }
            }
        }
        // Bits past the last chunk must be clear.
        for c in sb.storeChunkCount..<UInt64(words.count * 64) where words[Int(c >> 6)] & (1 << (c & 63)) != 0 {
            throw StoreError.corrupt("bitmap: chunk \(c) past the end of the store is marked in use")
        }
        let map = SpaceMap(chunkCount: sb.storeChunkCount, blockSize: bs, words: words,
                           blockAddresses: blockAddresses, indexAddresses: sb.indexAddresses)
        guard map.freeCount == sb.freeChunkCount else {
            throw StoreError.corrupt("bitmap counts \(map.freeCount) free chunks, superblock records \(sb.freeChunkCount)")
        }
        for slot in Format.superblockSlots where !map.isAllocated(slot) {
            throw StoreError.corrupt("bitmap: superblock slot \(slot) is not marked in use")
        }
        return map
    }
}
