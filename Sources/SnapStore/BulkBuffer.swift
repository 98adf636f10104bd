// A large, reusable byte buffer: the applier's batches, the control client's frames, the
// encoder's runs, the read-back of a commit's chunks. Memory is mapped, not zero-filled: a
// page costs its first-touch fault only when it is used (a zero-filled array touches all of
// it up front, a fraction of a millisecond per MiB here). With `hugePages` the mapping starts
// on a 2 MiB boundary and asks for transparent huge pages (one fault per 2 MiB): worth it for
// a buffer that carries hundreds of megabytes, not for a small one, since the kernel may
// compact memory to find a huge page (milliseconds, measured on this machine).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class BulkBuffer {
    public let capacity: Int
    private let base: UnsafeMutableRawPointer
    private let mappedBase: UnsafeMutableRawPointer
    /// 0: heap memory (the mapping failed).
    private let mappedBytes: Int
    /// Bytes in use, from the start (for `append`).
    public var count = 0

    public init(capacity: Int, hugePages: Bool = false) {
        let huge = hugePages ? 2 << 20 : 4096
        let bytes = max(huge, (capacity + huge - 1) / huge * huge)
        // With huge pages, map one more than needed and start on a 2 MiB boundary inside it:
        // only aligned 2 MiB ranges can be huge pages.
        let slack = hugePages ? huge : 0
        if let p = mmap(nil, bytes + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            let start = (UInt(bitPattern: p) + UInt(huge) - 1) / UInt(huge) * UInt(huge)
            let aligned = UnsafeMutableRawPointer(bitPattern: start)!
            if hugePages { _ = madvise(aligned, bytes, 14) }  // MADV_HUGEPAGE; a hint, refused on kernels without THP
            (base, mappedBase, mappedBytes) = (aligned, p, bytes + slack)
        } else {
            // No mapping to be had: ordinary heap memory does the same job, a little slower.
            base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 4096)
            (mappedBase, mappedBytes) = (base, 0)
        }
        self.capacity = capacity
    }

    deinit {
        if mappedBytes > 0 { munmap(mappedBase, mappedBytes) } else { base.deallocate() }
    }

    /// The bytes in use.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// All `capacity` bytes, to fill directly.
    public var storage: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: capacity) }

    public func append(_ piece: UnsafeRawBufferPointer) {
        precondition(count + piece.count <= capacity, "batch buffer overflow")
        guard let from = piece.baseAddress, piece.count > 0 else { return }
        (base + count).copyMemory(from: from, byteCount: piece.count)
        count += piece.count
    }
}
