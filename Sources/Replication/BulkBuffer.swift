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
    /// 0: heap memory (the mapping failed).
    private let mappedBytes: Int
    /// Bytes in use, from the start.
    var count = 0

    init(capacity: Int) {
        let huge = 2 << 20
        let bytes = (capacity + huge - 1) / huge * huge
        if let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            _ = madvise(p, bytes, 14)  // MADV_HUGEPAGE; a hint, refused on kernels without THP
            (base, mappedBytes) = (p, bytes)
        } else {
            // No mapping to be had: ordinary heap memory does the same job, a little slower.
            (base, mappedBytes) = (UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 4096), 0)
        }
        self.capacity = capacity
    }

    deinit {
        if mappedBytes > 0 { munmap(base, mappedBytes) } else { base.deallocate() }
    }

    /// The bytes in use.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func append(_ piece: UnsafeRawBufferPointer) {
        precondition(count + piece.count <= capacity, "batch buffer overflow")
        guard let from = piece.baseAddress, piece.count > 0 else { return }
        (base + count).copyMemory(from: from, byteCount: piece.count)
        count += piece.count
    }
}
