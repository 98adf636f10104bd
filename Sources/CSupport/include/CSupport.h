// Small C helpers the Swift code cannot express directly.
#ifndef ZUMA_CSUPPORT_H
#define ZUMA_CSUPPORT_H
#include <stdint.h>
#include <stddef.h>

/// CRC32C (Castagnoli) continuing from `crc` (pass 0 to start). Uses SSE4.2 when present.
uint32_t zuma_crc32c(uint32_t crc, const void *data, size_t length);

/// Size in bytes of the block device open on `fd`, or -1 with errno set.
int64_t zuma_block_device_size(int fd);

/// Non-blocking exclusive flock; 0 on success, -1 with errno set (EWOULDBLOCK when held).
int zuma_lock_exclusive(int fd);

/// Returns heap memory freed by the program to the system (glibc malloc_trim).
int zuma_release_free_memory(void);

#endif
