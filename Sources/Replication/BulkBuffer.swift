// A large, reusable byte buffer for the applier's batches, mapped once per apply. A process
// that copies a few hundred megabytes through fresh heap memory spends much of its time in
// page faults (one per 4 KiB); this buffer asks for transparent huge pages (one fault per
// 2 MiB where the kernel has them, else the same as before).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class BulkBuffer {
    let capacity: Int
    private let base: UnsafeMutableRawPointer
    private let mappedBytes: Int
    /// Bytes in use, from the start.
    var count = 0

    init(capacity: Int) {
        let huge = 2 << 20
        mappedBytes = (capacity + huge - 1) / huge * huge
        guard let p = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("cannot map \(mappedBytes) bytes for a delta batch")
        }
        _ = madvise(p, mappedBytes, 14)  // MADV_HUGEPAGE; a hint, refused on kernels without THP
        base = p
        self.capacity = capacity
    }

    deinit { munmap(base, mappedBytes) }

    /// The bytes in use.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func append(_ piece: UnsafeRawBufferPointer) {
        precondition(count + piece.count <= capacity, "batch buffer overflow")
        guard let from = piece.baseAddress, piece.count > 0 else { return }
        (base + count).copyMemory(from: from, byteCount: piece.count)
        count += piece.count
    }
}
