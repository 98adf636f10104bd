// Small C helpers the Swift code cannot express directly.
#ifndef ZUMA_CSUPPORT_H
#define ZUMA_CSUPPORT_H
#include <stdint.h>
#include <stddef.h>

/// CRC32C (Castagnoli) continuing from `crc` (pass 0 to start). Uses SSE4.2 when present.
uint32_t zuma_crc32c(uint32_t crc, const void *data, size_t length);

/// The CRC32C of A followed by B, from the CRC32C of each (each started from 0) and the
/// length of B in bytes.
uint32_t zuma_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b);

/// Size in bytes of the block device open on `fd`, or -1 with errno set.
int64_t zuma_block_device_size(int fd);

/// Non-blocking exclusive flock; 0 on success, -1 with errno set (EWOULDBLOCK when held).
int zuma_lock_exclusive(int fd);

/// Keeps large buffers (I/O requests of up to 64 MiB) in the heap for reuse instead of
/// mapping and unmapping them, which costs page faults and zeroing on every request.
void zuma_keep_large_buffers(void);

/// Returns heap memory freed by the program to the system (glibc malloc_trim).
int zuma_release_free_memory(void);

/// Attaches `file` to loop device number `preferred` when it is free (made when missing; -1:
/// no preference), else to any free loop device (direct I/O when `direct_io` and the file
/// allows it, read-only when `read_only`), writing its path into `device`. 0, or -1 with errno.
int zuma_loop_attach(const char *file, int read_only, int direct_io, int preferred, char *device, size_t device_cap);

/// Removes the (unbound) loop device `device` from the system: 0, or -1 with errno set.
int zuma_loop_remove(const char *device);

/// Detaches loop device `device`; a device still open (mounted) goes when its last user closes.
int zuma_loop_detach(const char *device);

/// Re-reads the size of the file behind loop device `device` (after a resize).
int zuma_loop_set_capacity(const char *device);

/// The lo_flags of loop device `device`, or -1 with errno set (ENXIO: no file bound).
int zuma_loop_flags(const char *device);

/// 1 when a detached loop device still waits for its last user to close it (autoclear).
int zuma_loop_detach_pending(const char *device);

/// Whether loop device `device` does direct I/O to its file: 1, 0, or -1 with errno set.
int zuma_loop_direct_io(const char *device);

/// Starts `path` with `argv` in a new session, standard input/output/error on /dev/null and
/// `pass_fd` as descriptor 3. Returns the child's pid, or -1 with errno set.
int zuma_spawn_detached(const char *path, char *const argv[], int pass_fd);

/// Freezes (FIFREEZE) or thaws (FITHAW) the filesystem mounted at `mount_point`; 0, or -1
/// with errno set (EOPNOTSUPP: the filesystem cannot freeze).
int zuma_freeze(const char *mount_point);
int zuma_thaw(const char *mount_point);

/// Makes bytes [offset, offset + length) of `fd` read as zeros without writing them: BLKZEROOUT
/// on a block device, FALLOC_FL_ZERO_RANGE (else PUNCH_HOLE) on a file. 0, or -1 with errno.
int zuma_zero_range(int fd, uint64_t offset, uint64_t length);

/// The same, freeing the space where it can: BLKZEROOUT on a block device, PUNCH_HOLE (else
/// ZERO_RANGE) on a file, so the range becomes a hole that SEEK_DATA skips.
int zuma_punch_zeros(int fd, uint64_t offset, uint64_t length);

/// Starts writing back the dirty pages of [offset, offset + length) without waiting
/// (sync_file_range SYNC_FILE_RANGE_WRITE): a later fdatasync then has less to wait for.
int zuma_start_writeback(int fd, uint64_t offset, uint64_t length);

/// Makes [out_offset, out_offset + length) of `out` share the extents of `in` at `in_offset`
/// (FICLONERANGE: a reflink, no data copied; XFS and btrfs). Offsets and length must be
/// multiples of the filesystem block size. Returns 0, or -1 with errno (EOPNOTSUPP, EXDEV,
/// EINVAL... when the filesystem cannot share: copy some other way).
int zuma_clone_range(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t length);

/// Copies `length` bytes of `in` at `in_offset` to `out` at `out_offset` in the kernel
/// (copy_file_range, repeated over short copies): the data is copied but never passes
/// through user memory. Returns 0, or -1 with errno (EXDEV, EINVAL, EOPNOTSUPP... when the
/// kernel cannot copy between these files: copy some other way; EIO when `in` ended early).
int zuma_copy_range(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t length);

#endif
