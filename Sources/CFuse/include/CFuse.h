// A thin bridge to libfuse3's low-level API: the C side owns the session, the request loop
// and the reply calls; the Swift side answers a handful of callbacks about block files.
#ifndef ZUMA_CFUSE_H
#define ZUMA_CFUSE_H
#include <stdint.h>
#include <stddef.h>

/// One file of the block-file directory (the root directory is inode 1).
struct zuma_fuse_node {
    uint64_t ino;
    uint64_t size;
    uint64_t generation;
    /// Modification time, nanoseconds since 1970 (a snapshot: when it was taken).
    uint64_t mtime_ns;
    int writable;
};

/// Answers to the kernel's requests. Each returns 0 or a positive errno.
struct zuma_fuse_callbacks {
    int (*lookup)(void *ctx, const char *name, struct zuma_fuse_node *out);
    int (*getattr)(void *ctx, uint64_t ino, struct zuma_fuse_node *out);
    /// Takes a listing of the directory; entries are read from it by index.
    uint64_t (*opendir)(void *ctx);
    /// Entry `index` of listing `dir` (ENOENT past the end); `name` has room for `cap` bytes.
    int (*entry)(void *ctx, uint64_t dir, uint64_t index, struct zuma_fuse_node *out, char *name, size_t cap);
    void (*releasedir)(void *ctx, uint64_t dir);
    int (*open)(void *ctx, uint64_t ino, int write);
    void (*release)(void *ctx, uint64_t ino);
    int (*read)(void *ctx, uint64_t ino, void *buffer, size_t size, uint64_t offset);
    int (*write)(void *ctx, uint64_t ino, const void *buffer, size_t size, uint64_t offset);
    int (*fsync)(void *ctx, uint64_t ino);
    /// Makes [offset, offset + length) read as zeros (fallocate punch-hole or zero-range with
    /// the size kept: a loop device's discard and write-zeroes).
    int (*zero)(void *ctx, uint64_t ino, uint64_t offset, uint64_t length);
};

struct zuma_fuse;

/// Mounts a block-file directory at `mountpoint`. NULL on failure, with a message in `error`.
struct zuma_fuse *zuma_fuse_mount(const char *mountpoint, const char *fsname,
                                  const struct zuma_fuse_callbacks *callbacks, void *ctx,
                                  char *error, size_t error_cap);

/// Serves requests on up to `threads` threads until the file system is unmounted.
int zuma_fuse_run(struct zuma_fuse *fuse, int threads);

/// Unmounts (lazily when busy), which makes `zuma_fuse_run` return.
void zuma_fuse_unmount(struct zuma_fuse *fuse);

/// Frees the session after `zuma_fuse_run` returned.
void zuma_fuse_destroy(struct zuma_fuse *fuse);

#endif
