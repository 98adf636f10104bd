// Reads and writes of the origin and of snapshots.
//
// The rule that keeps snapshots immutable: an origin chunk is never overwritten until its
// copy-out and the metadata pointing at it are durable. A write first copies out every
// chunk that needs it, commits once for all of them (group commit), then writes the origin.
// Rewrites of already-protected chunks go straight to the origin and touch no metadata.

extension Store {
    /// Where a snapshot's chunk lives.
    enum Location: Equatable {
        case origin
        case store(UInt64)
    }

    /// Chunks handled per copy-out batch of one write (bounds memory per commit).
    static var copyOutBatchChunks: Int { 256 }

    // MARK: Reading

    /// Reads `buffer.count` bytes at `offset` of the origin (`tag == nil`) or a snapshot.
    public func read(snapshot tag: UInt64? = nil, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try checkUsable()
        guard let tag else {
            try checkOriginRange(offset: offset, length: buffer.count)
            try originDevice.read(into: buffer, at: offset)
            return
        }
        let r = try readableRecord(tag: tag, offset: offset, length: buffer.count)
        try readAhead(tag: tag, epoch: r.epoch, sizeBytes: r.originSizeBytes, offset: offset, length: buffer.count)
        // Adjacent pieces that continue each other on the same device are read at once.
        var run: (fromOrigin: Bool, at: UInt64, range: Range<Int>)?
        func flushRun() throws {
            guard let pending = run else { return }
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[pending.range])
            if pending.fromOrigin {
                try originDevice.read(into: piece, at: pending.at)
            } else {
                try storeDevice.read(into: piece, at: pending.at)
            }
            run = nil
        }
        try forEachChunkPiece(offset: offset, length: buffer.count) { chunk, inner, range in
            let position = offset + UInt64(range.lowerBound)
            let location = try locate(epoch: r.epoch, chunk: chunk)
            let fromOrigin: Bool, at: UInt64
            switch location {
            case .origin:
                guard position + UInt64(range.count) <= superblock.originSizeBytes else {
                    throw StoreError.corrupt("snapshot \(tag) chunk \(chunk) lies past the origin's end but has no exception")
                }
                (fromOrigin, at) = (true, position)
            case let .store(chunkAt):
                (fromOrigin, at) = (false, chunkAt * chunkSize + UInt64(inner))
            }
            if let pending = run, pending.fromOrigin == fromOrigin, pending.at + UInt64(pending.range.count) == at,
               pending.range.upperBound == range.lowerBound {
                run!.range = pending.range.lowerBound..<range.upperBound
            } else {
                try flushRun()
                run = (fromOrigin, at, range)
            }
        }
        try flushRun()
    }

    /// Reads of a snapshot that continue the one before, of `readAheadMinBytes` or more, hint
    /// the store device to start reading the store chunks of the window after them (as many
    /// bytes again) now: after deletes have fragmented the store, a snapshot's copies sit in
    /// runs with gaps between them, and the kernel's own read-ahead, which follows the file,
    /// stops at every gap (64 MiB read in 1 MiB reads after 100,000 snapshots: 0.33x-0.58x the
    /// reference without hints, 0.62x-0.73x with them, in quick runs of zuma-bench). The
    /// origin needs none: it is read in the snapshot's own order.
    static var readAheadMinBytes: Int { 256 << 10 }

    private func readAhead(tag: UInt64, epoch: UInt64, sizeBytes: UInt64, offset: UInt64, length: Int) throws {
        defer { lastSnapshotRead = (tag, offset + UInt64(length)) }
        guard length >= Store.readAheadMinBytes, let last = lastSnapshotRead, last.tag == tag, last.end == offset else { return }
        let from = offset + UInt64(length)
        guard from < sizeBytes else { return }
        let to = min(sizeBytes, from + UInt64(length))
        var extent: Range<UInt64>?
        for chunk in (from / chunkSize)..<((to + chunkSize - 1) / chunkSize) {
            guard case let .store(at) = try locate(epoch: epoch, chunk: chunk) else { continue }
            let piece = (at * chunkSize)..<((at + 1) * chunkSize)
            if let e = extent, e.upperBound == piece.lowerBound {
                extent = e.lowerBound..<piece.upperBound
            } else {
                if let e = extent { storeDevice.willRead(at: e.lowerBound, length: UInt64(e.count)) }
                extent = piece
            }
        }
        if let e = extent { storeDevice.willRead(at: e.lowerBound, length: UInt64(e.count)) }
    }

    /// The chunks within `chunks` of the origin (`tag == nil`) or a snapshot that may hold
    /// data, as ranges: those read from the store, and those whose origin bytes the device has
    /// allocated. Every other chunk reads as zeros. Metadata and extent queries only.
    public func dataRanges(snapshot tag: UInt64? = nil, chunks: Range<UInt64>) throws -> [Range<UInt64>] {
        try checkUsable()
        let size = try tag.map { try readableRecord(tag: $0, offset: 0, length: 0).originSizeBytes } ?? superblock.originSizeBytes
        let end = min(chunks.upperBound, (size + chunkSize - 1) / chunkSize)
        guard chunks.lowerBound < end else { return [] }
        var marked = [Bool](repeating: false, count: Int(end - chunks.lowerBound))
        let originEnd = min(end * chunkSize, superblock.originSizeBytes)
        if chunks.lowerBound * chunkSize < originEnd {
            for e in try originDevice.dataExtents(in: (chunks.lowerBound * chunkSize)..<originEnd) {
                for c in (e.lowerBound / chunkSize)..<((e.upperBound + chunkSize - 1) / chunkSize) where c < end {
                    marked[Int(c - chunks.lowerBound)] = true
                }
            }
        }
        if let tag {
            // The chunks `locate` would read from the store, found by seeking the trees (a
            // few seeks per chunk that has copies) instead of looking up every chunk.
            let epoch = try record(tag: tag).epoch
            if privateChunks.count > 0 {
                try privateChunks.scan(from: Key(epoch, chunks.lowerBound)) { key, _, _ in
                    guard key.hi == epoch, key.lo < end else { return false }
                    marked[Int(key.lo - chunks.lowerBound)] = true
                    return true
                }
            }
            // Exceptions are keyed (chunk, epoch): a chunk reads from the store when it has one
            // with an epoch at or after the snapshot's.
            var next = Key(chunks.lowerBound, epoch)
            while let hit = try exceptionsByChunk.ceiling(next), hit.key.hi < end {
                if hit.key.lo >= epoch {
                    marked[Int(hit.key.hi - chunks.lowerBound)] = true
                    next = Key(hit.key.hi + 1, epoch)
                } else {
                    next = Key(hit.key.hi, epoch)
                }
            }
        }
        var out: [Range<UInt64>] = []
        for (i, m) in marked.enumerated() where m {
            let c = chunks.lowerBound + UInt64(i)
            if let last = out.last, last.upperBound == c { out[out.count - 1] = last.lowerBound..<(c + 1) } else { out.append(c..<(c + 1)) }
        }
        return out
    }

    /// A normal snapshot's record, with [offset, offset + length) inside it.
    func readableRecord(tag: UInt64, offset: UInt64, length: Int) throws -> SnapshotRecord {
        let r = try record(tag: tag)
        guard r.state == .normal else { throw StoreError.snapshotSquashed(tag) }
        try checkRange(offset, length, size: r.originSizeBytes, what: "snapshot \(tag)")
        return r
    }

    /// Splits [offset, offset + length) at chunk boundaries: calls `body` with each chunk,
    /// the offset within it, and the range of the caller's buffer that falls in it.
    func forEachChunkPiece(offset: UInt64, length: Int, _ body: (UInt64, Int, Range<Int>) throws -> Void) throws {
        var done = 0
        while done < length {
            let position = offset + UInt64(done)
            let inner = Int(position % chunkSize)
            let n = min(length - done, Int(chunkSize) - inner)
            try body(position / chunkSize, inner, done..<(done + n))
            done += n
        }
    }

    public func read(snapshot tag: UInt64? = nil, offset: UInt64, length: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        try bytes.withUnsafeMutableBytes { try read(snapshot: tag, offset: offset, into: $0) }
        return bytes
    }

    /// A snapshot reads its private copy, else the exception with the smallest epoch >= its
    /// own, else the origin.
    func locate(epoch: UInt64, chunk: UInt64) throws -> Location {
        if privateChunks.count > 0, let at = try privateChunks.find(Key(epoch, chunk)) {
            return .store(try dataChunk(at, "private chunk of epoch \(epoch) at chunk \(chunk)"))
        }
        if let hit = try exceptionsByChunk.ceiling(Key(chunk, epoch)), hit.key.hi == chunk {
            return .store(try dataChunk(hit.value, "exception (\(chunk), \(hit.key.lo))"))
        }
        return .origin
    }

    /// A store chunk a tree names as data: never a superblock slot, never past the store.
    private func dataChunk(_ at: UInt64, _ what: @autoclosure () -> String) throws -> UInt64 {
        guard at >= UInt64(Format.superblockSlots.count), at < superblock.storeChunkCount else {
            throw StoreError.corrupt("\(what()) points at store chunk \(at), outside 2..<\(superblock.storeChunkCount)")
        }
        return at
    }

    func checkRange(_ offset: UInt64, _ length: Int, size: UInt64, what: String) throws {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
        guard !overflow, end <= size else {
            throw StoreError.outOfRange("\(what): bytes \(offset)..<\(overflow ? UInt64.max : end) are past its end at \(formatCount(size)) bytes")
        }
    }

    // MARK: Writing

    /// Writes `data` at `offset` of the origin (`tag == nil`) or of a writable snapshot.
    /// Origin writes are in place once any copy-out they need is durable; they are durable
    /// themselves after `flush()`. An origin write is a thin form of `write(originBatch:)`, one
    /// slice of at most a copy-out batch (256 chunks) at a time, so that one commit covers a
    /// bounded amount of copy-outs.
    public func write(snapshot tag: UInt64? = nil, offset: UInt64, _ data: UnsafeRawBufferPointer) throws {
        try checkUsable()
        if let tag {
            try writeSnapshot(tag: tag, offset: offset, data)
            return
        }
        try checkOriginRange(offset: offset, length: data.count)
        let step = UInt64(Store.copyOutBatchChunks) * chunkSize
        var done = 0
        while done < data.count {
            let at = offset + UInt64(done)
            let end = min(data.count, done + Int(step - at % step))
            try write(originBatch: [(at, UnsafeRawBufferPointer(rebasing: data[done..<end]))])
            done = end
        }
    }

    /// The one check of an origin range: inside the origin, without overflow.
    public func checkOriginRange(offset: UInt64, length: Int) throws {
        try checkRange(offset, length, size: superblock.originSizeBytes, what: "origin")
    }

    /// An origin write that needs no copy-out (no live snapshot still reads any chunk it
    /// touches, as far as memory knows) goes straight to the origin and returns true; otherwise
    /// nothing is done and it returns false (use `write`). It reads store state and writes only
    /// the origin, so a caller may run it concurrently with other calls of it and with origin
    /// reads, never with anything else (a snapshot create in between would change the answer).
    public func writeOriginIfProtected(offset: UInt64, _ data: UnsafeRawBufferPointer) throws -> Bool {
        try checkUsable()
        try checkOriginRange(offset: offset, length: data.count)
        guard !data.isEmpty else { return true }
        let first = offset / chunkSize
        let last = (offset + UInt64(data.count) - 1) / chunkSize
        guard alreadyProtected(first..<(last + 1)) else { return false }
        try originDevice.write(data, at: offset)
        return true
    }

    /// Group commit: the origin writes of several requests, with one commit covering every
    /// copy-out any of them needs, then the origin writes in order. Ranges are checked first,
    /// so a bad extent fails the batch before anything is written. With `writeBehind` (a bulk
    /// writer that flushes at its end, like a delta apply), the origin starts writing the
    /// extents back at once, so that the final flush has little left to wait for; a batch
    /// that needed copy-outs does so for its extents of a chunk or more.
    public func write(originBatch extents: [(offset: UInt64, data: UnsafeRawBufferPointer)], writeBehind: Bool = false) throws {
        try checkUsable()
        for e in extents { try checkOriginRange(offset: e.offset, length: e.data.count) }
        let copiedOut = try protect(extents.map { ($0.offset, UInt64($0.data.count)) })
        for e in extents where !e.data.isEmpty { try originDevice.write(e.data, at: e.offset) }
        for e in extents where !e.data.isEmpty {
            if writeBehind {
                originDevice.startWriteback(at: e.offset, length: UInt64(e.data.count))
            } else if copiedOut {
                writeBehindAfterCopyOut(at: e.offset, length: UInt64(e.data.count))
            }
        }
    }

    /// Write-behind after copy-outs: the write already waited for a commit, and a flush will
    /// want its data too; a whole chunk or more starts to the disk now, while the next
    /// copy-outs are read and copied.
    private func writeBehindAfterCopyOut(at offset: UInt64, length: UInt64) {
        if length >= chunkSize { originDevice.startWriteback(at: offset, length: length) }
    }

    /// Makes bytes [offset, offset + length) of the origin read as zeros: copied out first
    /// where a snapshot still needs them, then a hole in the origin where its device can make
    /// one (discard, write-zeroes). Durable after `flush()`, like a write.
    public func writeZeros(originOffset offset: UInt64, length: UInt64) throws {
        try checkUsable()
        try checkOriginRange(offset: offset, length: Int(min(length, UInt64(Int.max))))
        guard length > 0 else { return }
        try protect([(offset, length)])
        try originDevice.writeZeros(at: offset, length: length)
    }

    /// One commit covering every copy-out the origin ranges need before they are overwritten.
    /// Returns whether any chunk was not known to be protected (a copy-out was considered).
    @discardableResult
    private func protect(_ ranges: [(offset: UInt64, length: UInt64)]) throws -> Bool {
        guard epochNewestLive != 0 else { return false }
        var needed: [UInt64] = []
        for r in ranges where r.length > 0 {
            let first = r.offset / chunkSize
            let last = (r.offset + r.length - 1) / chunkSize
            for c in first...last where c < snapshotChunksMax && !protected.contains(c) { needed.append(c) }
        }
        guard !needed.isEmpty else { return false }
        needed.sort()
        var unique: [UInt64] = []
        unique.reserveCapacity(needed.count)
        for c in needed where unique.last != c { unique.append(c) }
        try protectChunks(unique)
        return true
    }

    public func write(snapshot tag: UInt64? = nil, offset: UInt64, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write(snapshot: tag, offset: offset, $0) }
    }

    /// The fast path of a rewrite: no snapshot reads these chunks from the origin any more,
    /// as far as memory knows (no index lookup, no allocation).
    @inline(__always) func alreadyProtected(_ range: Range<UInt64>) -> Bool {
        if epochNewestLive == 0 { return true }
        for c in range where c < snapshotChunksMax && !protected.contains(c) { return false }
        return true
    }

    /// Does chunk `c` of the origin need a copy-out before it may be overwritten?
    func needsCopyOut(_ c: UInt64, newest: UInt64) throws -> Bool {
        if newest == 0 || protected.contains(c) { return false }
        if c >= snapshotChunksMax { return false }
        if let hit = try exceptionsByChunk.floor(Key(c, .max)), hit.key.hi == c, hit.key.lo >= newest {
            protected.insert(c)
            return false
        }
        return true
    }

    /// Copies out every chunk in `range` that a snapshot still reads from the origin, and
    /// commits, so that the origin may be overwritten there.
    /// `mayGiveUpSnapshots: false` (a resize): throws `noSpace` rather than delete or squash
    /// a snapshot when the store runs short.
    func protectChunks<Chunks: Sequence<UInt64>>(_ range: Chunks, mayGiveUpSnapshots: Bool = true) throws {
        if epochNewestLive == 0 { return }
        try mutate {
            var filteredFor = epochNewestLive
            var pending = try range.filter { try needsCopyOut($0, newest: filteredFor) }[...]
            // More data than a single-flush commit may list: the commit syncs twice and needs
            // no checksum of it, so the copies may stay in the kernel.
            let inKernel = UInt64(pending.count) * chunkSize > Store.verifiedCommitBytesMax
            var copied = false
            while !pending.isEmpty {
                // Room for at least one copy-out; take as many as fit.
                try ensureSpace(chunks: 1, mayGiveUpSnapshots: mayGiveUpSnapshots)
                let room = space.reusable - 2 * reservePerOperation - space.commitReserve
                let take = Int(min(UInt64(pending.count), room))
                let newest = epochNewestLive
                var batch = Array(pending.prefix(take))
                if newest != filteredFor {
                    // The store-full policy gave up snapshots: ask again which chunks need it.
                    batch = try batch.filter { try needsCopyOut($0, newest: newest) }
                    filteredFor = newest
                }
                pending = pending.dropFirst(take)
                if !batch.isEmpty {
                    try copyOut(batch, label: newest, inKernel: inKernel)
                    copied = true
                }
            }
            if copied { try commit(singleFlush: true, mayLog: true) }
        }
    }

    /// Copies origin chunks `chunks` (increasing) into fresh store chunks and records
    /// exceptions (c, label). Contiguous origin chunks are read with one read, and chunks
    /// that land on contiguous store chunks are written with one write. With `inKernel`, data
    /// that cannot be shared is copied in the kernel where it can (no checksum is taken: the
    /// commit reads such runs back if it lists them).
    func copyOut(_ chunks: [UInt64], label: UInt64, inKernel: Bool = false) throws {
        var start = 0
        while start < chunks.count {
            // A run: contiguous origin chunks whose fresh store chunks are contiguous too.
            var end = start + 1
            while end < chunks.count, chunks[end] == chunks[end - 1] + 1, end - start < Store.copyOutBatchChunks { end += 1 }
            let addresses = Array(try space.allocateRun(upTo: end - start))
            end = start + addresses.count
            let count = end - start
            let first = chunks[start] * chunkSize
            let bytes = count * chunkSizeBytes
            let valid = Int(min(UInt64(bytes), superblock.originSizeBytes - first))
            var crc: UInt32?
            let target = addresses[0] * chunkSize
            let extents = try originDevice.dataExtents(in: first..<(first + UInt64(valid)))
            if extents.isEmpty {
                // A hole of a file origin (never written, or discarded): the copy reads as
                // zeros without reading or writing any data (and without touching the store
                // where its chunks are a hole already).
                try zeroStore(at: target, length: UInt64(bytes))
            } else if valid == bytes, try originDevice.copy(UInt64(bytes), at: first, to: storeDevice, at: target) {
                // Shared, on a filesystem with reflinks.
            } else if inKernel, try copyInKernel(bytes: bytes, from: first, extents: extents, to: target) {
                // Copied in the kernel.
            } else {
                crc = try copyByHand(bytes: bytes, from: first, extents: extents, to: target)
            }
            transactionDataRuns.append(TransactionDataRun(chunks: addresses[0]..<(addresses[0] + UInt64(count)), crc: crc))
            for i in 0..<count {
                let c = chunks[start + i]
                try exceptionsByChunk.upsert(Key(c, label), addresses[i])
                try exceptionsByEpoch.upsert(Key(label, c), addresses[i])
                protected.insert(c)
            }
            noteLogged(CopyOutLogEntry(chunk: chunks[start], epoch: label, address: addresses[0], count: UInt32(count)))
            start = end
        }
        options.onActivity?(.copiedOut(chunks: chunks.count))
    }

    /// Copies `bytes` from origin offset `first` to store offset `target` through the copy
    /// buffer; returns the CRC32C of what the store now holds there.
    private func copyByHand(bytes: Int, from first: UInt64, extents: [Range<UInt64>], to target: UInt64) throws -> UInt32 {
        let run = UnsafeMutableRawBufferPointer(rebasing: copyBuffer.storage[0..<bytes])
        try forEachExtent(bytes: bytes, from: first, extents: extents, to: target, hole: { r in
            UnsafeMutableRawBufferPointer(rebasing: run[r]).initializeMemory(as: UInt8.self, repeating: 0)
        }) { r in
            let piece = UnsafeMutableRawBufferPointer(rebasing: run[r])
            try originDevice.read(into: piece, at: first + UInt64(r.lowerBound))
            try storeDevice.write(UnsafeRawBufferPointer(piece), at: target + UInt64(r.lowerBound))
        }
        return crc32c(UnsafeRawBufferPointer(run))
    }

    /// Copies `bytes` from origin offset `first` to store offset `target` in the kernel; false
    /// when the devices cannot (the caller copies by hand).
    private func copyInKernel(bytes: Int, from first: UInt64, extents: [Range<UInt64>], to target: UInt64) throws -> Bool {
        var copied = true
        try forEachExtent(bytes: bytes, from: first, extents: extents, to: target) { r in
            guard copied else { return }
            copied = try originDevice.copyInKernel(UInt64(r.count), at: first + UInt64(r.lowerBound), to: storeDevice, at: target + UInt64(r.lowerBound))
        }
        return copied
    }

    /// The pieces of a copy-out run of `bytes` at origin offset `first`, offsets within the
    /// run: `data` for each of the origin's data `extents`; the holes between and after them
    /// (a file origin's never-written ranges, the tail past the origin's end) become zeros in
    /// the store at `target` without data written, and are passed to `hole`. So copying out
    /// a mostly empty range costs what its data costs.
    private func forEachExtent(bytes: Int, from first: UInt64, extents: [Range<UInt64>], to target: UInt64,
                               hole: (Range<Int>) -> Void = { _ in }, data: (Range<Int>) throws -> Void) throws {
        var done = 0
        for e in extents + [(first + UInt64(bytes))..<(first + UInt64(bytes))] {
            let lo = Int(e.lowerBound - first), hi = Int(e.upperBound - first)
            if lo > done {
                hole(done..<lo)
                try zeroStore(at: target + UInt64(done), length: UInt64(lo - done))
            }
            if hi > lo { try data(lo..<hi) }
            done = hi
        }
    }

    /// Makes a store range read as zeros, leaving it alone where it is a hole already.
    private func zeroStore(at offset: UInt64, length: UInt64) throws {
        if try !storeDevice.dataExtents(in: offset..<(offset + length)).isEmpty {
            try storeDevice.writeZeros(at: offset, length: length)
        }
    }

    private func writeSnapshot(tag: UInt64, offset: UInt64, _ data: UnsafeRawBufferPointer) throws {
        let r = try readableRecord(tag: tag, offset: offset, length: data.count)
        try forEachChunkPiece(offset: offset, length: data.count) { chunk, inner, range in
            let n = range.count
            let piece = UnsafeRawBufferPointer(rebasing: data[range])
            if let found = try privateChunks.find(Key(r.epoch, chunk)) {
                let at = try dataChunk(found, "private chunk of snapshot \(tag) at chunk \(chunk)")
                // Already private: nobody else reads it, so it is rewritten in place. The
                // newest durable commit must not list it (open would refuse that commit),
                // so such a chunk first gets a two-flush commit on top.
                if inLastVerifiedRuns(at) { try commit(singleFlush: false) }
                forgetDataCRC(at)
                try storeDevice.write(piece, at: at * chunkSize + UInt64(inner))
                storeDataUnsynced = true
            } else {
                try ensureSpace(chunks: 1)
                // The store-full policy may have squashed this very snapshot.
                guard (try record(tag: tag)).state == .normal else { throw StoreError.snapshotSquashed(tag) }
                try mutate {
                    // Start from the snapshot's current view of the chunk, then overlay.
                    let chunkStart = chunk * chunkSize
                    let valid = Int(min(chunkSize, r.originSizeBytes - chunkStart))
                    var merged = [UInt8](repeating: 0, count: chunkSizeBytes)
                    if n < valid {
                        try merged.withUnsafeMutableBytes {
                            try read(snapshot: tag, offset: chunkStart, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<valid]))
                        }
                    }
                    merged.withUnsafeMutableBytes { m in
                        UnsafeMutableRawBufferPointer(rebasing: m[inner..<(inner + n)]).copyMemory(from: piece)
                    }
                    let at = try space.allocate()
                    try storeDevice.write(merged, at: at * chunkSize)
                    transactionDataRuns.append(TransactionDataRun(chunks: at..<(at + 1), crc: crc32c(merged)))
                    try privateChunks.upsert(Key(r.epoch, chunk), at)
                }
            }
        }
    }
}
