// Revert and resize. Revert rewrites only the chunks that differ between the snapshot and
// the origin, through the ordinary write path, so every other snapshot keeps its contents.
// Resizing the origin copies out what a shrink would cut off before cutting; existing
// snapshots keep their size and contents. Resizing the store grows or shrinks its bitmap;
// a shrink that would cut off chunks in use is refused.

extension Store {
    // MARK: Revert

    /// Makes the origin equal to snapshot `tag` (size and contents); returns how many
    /// chunks were rewritten.
    @discardableResult
    public func revert(to tag: UInt64) throws -> Int {
        try checkUsable()
        let r = try record(tag: tag)
        guard r.state == .normal else { throw StoreError.snapshotSquashed(tag) }
        if r.originSizeBytes != superblock.originSizeBytes { try resizeOrigin(to: r.originSizeBytes) }
        var next: UInt64 = 0
        var rewritten = 0
        var buffer = [UInt8](repeating: 0, count: chunkSizeBytes)
        while true {
            // Collect a batch first: writing adds exceptions the merge would otherwise see.
            var batch: [UInt64] = []
            try changedChunks(from: .snapshot(tag), to: .origin, startingAt: next) { c in
                batch.append(c)
                return batch.count < Store.copyOutBatchChunks
            }
            if batch.isEmpty { break }
            for c in batch {
                // Exceptions kept for larger snapshots: past this one's end, already cut off.
                guard c < (r.originSizeBytes + chunkSize - 1) / chunkSize else { continue }
                let start = c * chunkSize
                let n = Int(min(chunkSize, r.originSizeBytes - start))
                try buffer.withUnsafeMutableBytes { b in
                    let piece = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                    try read(snapshot: tag, offset: start, into: piece)
                    try write(offset: start, UnsafeRawBufferPointer(piece))
                }
                rewritten += 1
            }
            next = batch[batch.count - 1] + 1
        }
        try flush()
        return rewritten
    }

    // MARK: Origin size

    /// Grows or shrinks the origin to `newSize` bytes (a multiple of 512). A regular file is
    /// truncated or extended (the new part reads as zeros); a block device must already have
    /// at least the new size.
    public func resizeOrigin(to newSize: UInt64) throws {
        try checkUsable()
        guard newSize > 0, newSize % 512 == 0 else {
            throw StoreError.invalidArgument("origin size \(newSize) must be a positive multiple of 512 bytes")
        }
        let oldSize = superblock.originSizeBytes
        if newSize == oldSize { return }
        if newSize < oldSize {
            // Everything a snapshot reads past the new end must be in the store first. A resize
            // never gives up a snapshot for that room: it counts the copy-outs first and refuses,
            // naming the shortfall, when the store cannot hold them.
            let cut = (newSize / chunkSize)..<((oldSize + chunkSize - 1) / chunkSize)
            try requireRoomForCopyOuts(of: cut, newSize: newSize)
            try protectChunks(cut, mayGiveUpSnapshots: false)
            try mutate {
                superblock.originSizeBytes = newSize
                superblockDirty = true
                try commit()
            }
            if originDevice.identity.kind != .blockDevice { try originDevice.resize(to: newSize) }
        } else {
            if originDevice.identity.kind == .blockDevice {
                try originDevice.refreshSize()
                guard originDevice.sizeBytes >= newSize else {
                    throw StoreError.invalidArgument("origin \(originDevice.path) is \(formatCount(originDevice.sizeBytes)) bytes; grow the device before resizing to \(formatCount(newSize))")
                }
            } else {
                // Drop anything past the recorded end first, so the new part reads as zeros.
                if originDevice.sizeBytes > oldSize { try originDevice.resize(to: oldSize) }
                try originDevice.resize(to: newSize)
                try originDevice.sync()
            }
            try mutate {
                superblock.originSizeBytes = newSize
                superblockDirty = true
                try commit()
            }
        }
    }

    /// Throws a clean refusal when the copy-outs that `chunks` need (and the exception-tree
    /// nodes to index them, every leaf counted half full) do not fit in the free store.
    private func requireRoomForCopyOuts(of chunks: Range<UInt64>, newSize: UInt64) throws {
        try checkUsable()
        var needed: UInt64 = 0
        let newest = epochNewestLive
        for c in chunks where c < snapshotChunksMax {
            if try needsCopyOut(c, newest: newest) { needed += 1 }
        }
        guard needed > 0 else { return }
        if !space.pinned.isEmpty { try commit() }
        let perLeaf = UInt64(max(Node.capacity(blockSize: chunkSizeBytes, stride: 1) / 2, 1))
        let metadata = 2 * (needed / perLeaf + 1) + 2 * reservePerOperation + space.commitReserve
        let available = space.reusable
        guard available >= needed + metadata else {
            let short = needed + metadata - available
            throw StoreError.invalidArgument("shrinking the origin to \(formatCount(newSize)) bytes copies out \(formatCount(needed * chunkSize)) bytes that snapshots still read past the new end, and the snapshot store has \(formatCount(available * chunkSize)) bytes free: \(formatCount(short * chunkSize)) bytes short (with the metadata). Grow the snapshot store or delete snapshots first; no snapshot was touched")
        }
    }

    // MARK: Store size

    /// Grows or shrinks the snapshot store to `newSize` bytes.
    public func resizeStore(to newSize: UInt64) throws {
        try checkUsable()
        let newChunks = newSize / chunkSize
        let minimum = Store.minimumStoreChunks(chunkSizeBytes: chunkSizeBytes)
        guard newChunks >= minimum else {
            throw StoreError.invalidArgument("snapshot store size \(formatCount(newSize)) is below the minimum of \(formatCount(minimum * chunkSize)) bytes")
        }
        let blocks = SpaceMap.blockCount(chunks: newChunks, blockSize: chunkSizeBytes)
        guard SpaceMap.indexCount(blocks: blocks, blockSize: chunkSizeBytes) <= Superblock.indexAddressesMax else {
            throw StoreError.invalidArgument("snapshot store size \(formatCount(newSize)) is too large for \(chunkSizeBytes / 1024) KiB chunks")
        }
        if newChunks == space.chunkCount { return }
        if newChunks < space.chunkCount {
            try commit()
            // The shrink itself rewrites bitmap blocks; they must land below the new end too,
            // so leave room for them.
            let highest = space.highestInUse() ?? 0
            guard highest < newChunks else {
                throw StoreError.invalidArgument("cannot shrink the snapshot store to \(formatCount(newSize)) bytes: chunk \(highest) (byte \(formatCount(highest * chunkSize))) is in use; at least \(formatCount((highest + 1) * chunkSize)) bytes are needed")
            }
            try mutate {
                space.resize(to: newChunks)
                superblockDirty = true
                try commit()
                // Bitmap shadows of this commit were allocated below the new end (the map is
                // already short), so the tail holds nothing.
            }
            if storeDevice.identity.kind != .blockDevice { try storeDevice.resize(to: newChunks * chunkSize) }
        } else {
            if storeDevice.identity.kind == .blockDevice {
                try storeDevice.refreshSize()
                guard storeDevice.sizeBytes >= newChunks * chunkSize else {
                    throw StoreError.invalidArgument("snapshot store \(storeDevice.path) is \(formatCount(storeDevice.sizeBytes)) bytes; grow the device first")
                }
            } else {
                try storeDevice.resize(to: newChunks * chunkSize)
            }
            try mutate {
                space.resize(to: newChunks)
                superblockDirty = true
                try commit()
            }
        }
    }
}
