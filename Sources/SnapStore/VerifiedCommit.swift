// Single-flush commits. A small commit lists every chunk it wrote (metadata blocks and the
// data chunks of its copy-outs), with a checksum per run, in the superblock itself; the
// blocks and the superblock are then written together and made durable by one flush. Open
// accepts such a superblock only if every run reads back with its checksum, and otherwise
// uses the other slot (the previous commit, durable before this one began). Large commits
// keep the two-flush order (blocks, flush, superblock, flush), so open never reads more
// than `verifiedCommitBytesMax` to decide. docs/FORMAT.md "Verified commits".

/// Collects the runs of one commit. Blocks are added in increasing address order within
/// each group; a block that continues the last run extends it (the CRC chains).
struct VerifiedRunList {
    let chunkSize: UInt64
    let capacity: Int
    let bytesMax: UInt64
    private(set) var runs: [VerifiedRun] = []
    private(set) var bytes: UInt64 = 0
    /// Too many runs or bytes: this commit takes the two-flush path.
    private(set) var abandoned: Bool

    init(chunkSize: UInt64, capacity: Int, bytesMax: UInt64, enabled: Bool) {
        self.chunkSize = chunkSize
        self.capacity = capacity
        self.bytesMax = bytesMax
        abandoned = !enabled || capacity == 0
    }

    /// Would `chunks` more chunks still fit the byte budget?
    func fits(chunks: UInt64) -> Bool { !abandoned && bytes + chunks * chunkSize <= bytesMax }

    mutating func abandon() {
        abandoned = true
        runs.removeAll()
    }

    /// Adds bytes written at chunk `address` (a whole number of chunks).
    mutating func add(_ address: UInt64, _ data: UnsafeRawBufferPointer) {
        guard !abandoned else { return }
        add(address, chunks: UInt64(data.count) / chunkSize, crc: crc32c(data))
    }

    /// Adds `chunks` chunks at `address` whose bytes have CRC32C `crc` (seed 0). A run that
    /// continues the last one extends it (the CRCs are joined).
    mutating func add(_ address: UInt64, chunks: UInt64, crc: UInt32) {
        guard !abandoned else { return }
        guard fits(chunks: chunks) else { return abandon() }
        bytes += chunks * chunkSize
        if let last = runs.last, last.address + UInt64(last.count) == address, last.count < UInt32.max / 2 {
            runs[runs.count - 1].count += UInt32(chunks)
            runs[runs.count - 1].crc = crc32cCombine(last.crc, crc, lengthB: chunks * chunkSize)
            return
        }
        guard runs.count < capacity else { return abandon() }
        runs.append(VerifiedRun(address: address, count: UInt32(chunks), crc: crc))
    }

    /// Does any run listed so far cover a chunk of `range`?
    func covers(any range: Range<UInt64>) -> Bool {
        runs.contains { $0.address < range.upperBound && range.lowerBound < $0.address + UInt64($0.count) }
    }
}

/// Store chunks a transaction wrote with data (a copy-out, a new private chunk), with the
/// CRC32C of what it wrote when the bytes passed through memory (nil: copied in the kernel
/// or zeroed; read back at commit).
struct TransactionDataRun {
    var chunks: Range<UInt64>
    var crc: UInt32?
}

extension Store {
    /// Bytes a single-flush commit may list (open reads them all back).
    static var verifiedCommitBytesMax: UInt64 { 2 << 20 }

    /// Adds the data chunks written in this transaction that are still allocated. A run whose
    /// CRC was taken as it was written is listed with it; the others are read back (after the
    /// metadata writes, so a chunk reused as metadata is listed as what it now holds), and so
    /// is a run that lost a chunk, overlaps another (written twice) or shares a chunk with
    /// this commit's metadata. Gives up on verification when they do not fit.
    func addDataRuns(to list: inout VerifiedRunList) throws {
        guard !list.abandoned, !transactionDataRuns.isEmpty else { return }
        var pieces: [TransactionDataRun] = []
        var total: UInt64 = 0
        for run in transactionDataRuns.sorted(by: { $0.chunks.lowerBound < $1.chunks.lowerBound }) {
            var c = run.chunks.lowerBound
            while c < run.chunks.upperBound {
                guard space.isAllocated(c) else { c += 1; continue }
                var end = c + 1
                while end < run.chunks.upperBound && space.isAllocated(end) { end += 1 }
                let whole = c == run.chunks.lowerBound && end == run.chunks.upperBound
                if let last = pieces.last, last.chunks.upperBound > c {
                    // Overlaps an earlier run (a chunk freed and allocated again): extend.
                    pieces[pieces.count - 1] = TransactionDataRun(chunks: last.chunks.lowerBound..<max(end, last.chunks.upperBound), crc: nil)
                } else {
                    pieces.append(TransactionDataRun(chunks: c..<end, crc: whole ? run.crc : nil))
                }
                c = end
            }
        }
        for p in pieces { total += UInt64(p.chunks.count) }
        guard list.fits(chunks: total) else { return list.abandon() }
        for p in pieces {
            if let crc = p.crc, !list.covers(any: p.chunks) {
                list.add(p.chunks.lowerBound, chunks: UInt64(p.chunks.count), crc: crc)
            } else {
                try Store.readBack(p.chunks, chunkSize: chunkSize, from: storeDevice, buffer: verifyBuffer) { list.add($0, $1) }
            }
        }
    }

    /// Forgets the CRC of any data run of this transaction that covers chunk `c` (rewritten
    /// in place): it is read back at commit.
    func forgetDataCRC(_ c: UInt64) {
        for i in transactionDataRuns.indices where transactionDataRuns[i].chunks.contains(c) {
            transactionDataRuns[i].crc = nil
        }
    }

    /// A buffer for `readBack` (1 MiB, or one chunk if larger).
    static func readBackBuffer(chunkSize: UInt64) -> BulkBuffer {
        BulkBuffer(capacity: Int(max(1 << 20, chunkSize)))
    }

    /// Reads chunks `range` of `store` in pieces of about 1 MiB, in order, showing each piece
    /// and its first chunk to `body`.
    static func readBack(_ range: Range<UInt64>, chunkSize: UInt64, from store: Device, buffer: BulkBuffer,
                         _ body: (UInt64, UnsafeRawBufferPointer) -> Void) throws {
        let step = max(1, UInt64(buffer.capacity) / chunkSize)
        var c = range.lowerBound
        while c < range.upperBound {
            let n = min(step, range.upperBound - c)
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer.storage[0..<Int(n * chunkSize)])
            try store.read(into: piece, at: c * chunkSize)
            body(c, UnsafeRawBufferPointer(piece))
            c += n
        }
    }

    /// Is chunk `c` part of the newest durable commit's verified runs? Such a chunk must
    /// not change until a later commit is durable, or open would refuse that commit.
    func inLastVerifiedRuns(_ c: UInt64) -> Bool {
        superblock.verifiedRuns.contains { c >= $0.address && c < $0.address + UInt64($0.count) }
    }

    /// Reads back every verified run of `sb`; throws the first mismatch.
    static func verifyRuns(of sb: Superblock, on store: Device) throws {
        guard !sb.verifiedRuns.isEmpty else { return }
        let cs = UInt64(sb.chunkSizeBytes)
        var total: UInt64 = 0
        for r in sb.verifiedRuns {
            // (Without overflow: a forged run must not wrap around.)
            let (end, overflow) = r.address.addingReportingOverflow(UInt64(r.count))
            guard r.count > 0, r.address >= UInt64(Format.superblockSlots.count), !overflow,
                  end <= sb.storeChunkCount, end <= store.sizeBytes / cs else {
                throw StoreError.corrupt("commit \(sb.sequence): verified run \(r.address)+\(r.count) lies outside the store")
            }
            total += UInt64(r.count) * cs
        }
        guard total <= verifiedCommitBytesMax else {
            throw StoreError.corrupt("commit \(sb.sequence): verified runs cover \(total) bytes, more than \(verifiedCommitBytesMax)")
        }
        let buffer = readBackBuffer(chunkSize: cs)
        for r in sb.verifiedRuns {
            var crc: UInt32 = 0
            try readBack(r.address..<(r.address + UInt64(r.count)), chunkSize: cs, from: store, buffer: buffer) {
                crc = crc32c($1, seed: crc)
            }
            guard crc == r.crc else {
                throw StoreError.corrupt("commit \(sb.sequence) is incomplete: chunks \(r.address)+\(r.count) do not match their checksum")
            }
        }
    }
}
