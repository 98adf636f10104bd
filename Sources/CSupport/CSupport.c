#define _GNU_SOURCE
#include "CSupport.h"
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

static uint32_t table[8][256];
static int table_ready;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    table_ready = 1;
}

static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t n) {
    if (!table_ready) build_table();
    while (n >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        w ^= crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8; n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return crc;
}

// CRC arithmetic modulo the (reflected) Castagnoli polynomial, for joining the CRCs of
// adjacent pieces: crc(A || B) = crc(A) * x^(8 |B|) + crc(B), all mod P. Bit 31 is x^0.
#define CRC32C_POLY 0x82F63B78u

static uint32_t mult_mod_p(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return p;
}

/// x^(2^k) mod P for k = 0..31.
static uint32_t x2n_table[32];
static int x2n_ready;

static void build_x2n(void) {
    uint32_t p = 1u << 30;  // x^1
    x2n_table[0] = p;
    for (int n = 1; n < 32; n++) x2n_table[n] = p = mult_mod_p(p, p);
    x2n_ready = 1;
}

/// x^(n * 2^k) mod P.
static uint32_t x2n_mod_p(uint64_t n, unsigned k) {
    if (!x2n_ready) build_x2n();
    uint32_t p = 1u << 31;  // x^0
    while (n) {
        if (n & 1) p = mult_mod_p(x2n_table[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

uint32_t zuma_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
    return mult_mod_p(x2n_mod_p(length_b, 3), crc_a) ^ crc_b;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw_one(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8; n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

/// Large buffers in three interleaved streams (the crc32 instruction has a latency of three
/// cycles and a throughput of one), joined with `zuma_crc32c_combine`. Works on the inverted
/// state like `crc_hw_one`.
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n) {
    if (n < 3 * 4096) return crc_hw_one(crc, p, n);
    size_t part = (n / 3) & ~(size_t)7;
    const uint8_t *q = p + part, *r = p + 2 * part;
    uint64_t a = crc, b = 0xFFFFFFFFu, c = 0xFFFFFFFFu;
    for (size_t i = 0; i < part; i += 8) {
        uint64_t wa, wb, wc;
        __builtin_memcpy(&wa, p + i, 8);
        __builtin_memcpy(&wb, q + i, 8);
        __builtin_memcpy(&wc, r + i, 8);
        a = __builtin_ia32_crc32di(a, wa);
        b = __builtin_ia32_crc32di(b, wb);
        c = __builtin_ia32_crc32di(c, wc);
    }
    // Finish the third stream with the tail, then join the three as plain CRCs.
    size_t tail = n - 3 * part;
    uint32_t c32 = crc_hw_one((uint32_t)c, r + part, tail);
    uint32_t joined = zuma_crc32c_combine(~(uint32_t)a, ~(uint32_t)b, part);
    joined = zuma_crc32c_combine(joined, ~c32, part + tail);
    return ~joined;
}
#endif

uint32_t zuma_crc32c(uint32_t crc, const void *data, size_t length) {
    crc = ~crc;
#if defined(__x86_64__)
    static int hw = -1;
    if (hw < 0) { __builtin_cpu_init(); hw = __builtin_cpu_supports("sse4.2") ? 1 : 0; }
    crc = hw ? crc_hw(crc, data, length) : crc_soft(crc, data, length);
#else
    crc = crc_soft(crc, data, length);
#endif
    return ~crc;
}

int64_t zuma_block_device_size(int fd) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) return -1;
    return (int64_t)size;
}

int zuma_lock_exclusive(int fd) {
    return flock(fd, LOCK_EX | LOCK_NB);
}

void zuma_keep_large_buffers(void) {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

int zuma_release_free_memory(void) {
    return malloc_trim(0);
}

#include <linux/loop.h>
#include <stdio.h>
#include <string.h>

/// Binds `backing` to loop device number `n` (writing its path into `device`): 0, or -1 with
/// errno set (EBUSY: the device is taken).
static int configure_loop(int n, int backing, const char *file, int read_only, int direct_io, char *device, size_t device_cap) {
    snprintf(device, device_cap, "/dev/loop%d", n);
    int loop = open(device, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (loop < 0) return -1;
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (uint32_t)backing;
    config.info.lo_flags = (read_only ? LO_FLAGS_READ_ONLY : 0) | (direct_io ? LO_FLAGS_DIRECT_IO : 0);
    strncpy((char *)config.info.lo_file_name, file, LO_NAME_SIZE - 1);
    int rc = ioctl(loop, LOOP_CONFIGURE, &config);
    if (rc < 0 && errno == EINVAL && direct_io) {
        // The file refuses direct I/O: buffered loop I/O still reaches the store.
        config.info.lo_flags &= ~LO_FLAGS_DIRECT_IO;
        rc = ioctl(loop, LOOP_CONFIGURE, &config);
    }
    int e = errno;
    close(loop);
    errno = e;
    return rc;
}

int zuma_loop_attach(const char *file, int read_only, int direct_io, int preferred, char *device, size_t device_cap) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -1;
    int backing = open(file, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct_io ? O_DIRECT : 0));
    if (backing < 0 && direct_io) backing = open(file, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (backing < 0) { int e = errno; close(control); errno = e; return -1; }
    // The preferred number first (made when missing); any free one when it is taken.
    if (preferred >= 0) {
        if (ioctl(control, LOOP_CTL_ADD, preferred) >= 0 || errno == EEXIST) {
            if (configure_loop(preferred, backing, file, read_only, direct_io, device, device_cap) == 0) {
                close(backing); close(control); return 0;
            }
        }
    }
    // Another process may take the free device between the two calls: try again then.
    for (int attempt = 0; attempt < 16; attempt++) {
        int n = ioctl(control, LOOP_CTL_GET_FREE);
        if (n < 0) break;
        int rc = configure_loop(n, backing, file, read_only, direct_io, device, device_cap);
        int e = errno;
        if (rc == 0) { close(backing); close(control); return 0; }
        if (e != EBUSY && e != ENOENT) { close(backing); close(control); errno = e; return -1; }
    }
    int e = errno;
    close(backing);
    close(control);
    errno = e ? e : EBUSY;
    return -1;
}

int zuma_loop_remove(const char *device) {
    int n = -1;
    if (sscanf(device, "/dev/loop%d", &n) != 1 || n < 0) { errno = EINVAL; return -1; }
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -1;
    int rc = ioctl(control, LOOP_CTL_REMOVE, n);
    int e = errno;
    close(control);
    errno = e;
    return rc < 0 ? -1 : 0;
}

/// One argument-less ioctl on a loop device, with errno kept across the close.
static int loop_ioctl(const char *device, unsigned long request) {
    int loop = open(device, O_RDONLY | O_CLOEXEC);
    if (loop < 0) return -1;
    int rc = ioctl(loop, request, 0);
    int e = errno;
    close(loop);
    errno = e;
    return rc;
}

int zuma_loop_detach(const char *device) { return loop_ioctl(device, LOOP_CLR_FD); }

int zuma_loop_set_capacity(const char *device) { return loop_ioctl(device, LOOP_SET_CAPACITY); }

int zuma_loop_flags(const char *device) {
    int loop = open(device, O_RDONLY | O_CLOEXEC);
    if (loop < 0) return -1;
    struct loop_info64 info;
    int rc = ioctl(loop, LOOP_GET_STATUS64, &info);
    int e = errno;
    close(loop);
    if (rc < 0) { errno = e; return -1; }
    return (int)info.lo_flags;
}

int zuma_loop_direct_io(const char *device) {
    int flags = zuma_loop_flags(device);
    return flags < 0 ? -1 : (flags & LO_FLAGS_DIRECT_IO) ? 1 : 0;
}

int zuma_loop_detach_pending(const char *device) {
    int flags = zuma_loop_flags(device);
    return flags >= 0 && (flags & LO_FLAGS_AUTOCLEAR) ? 1 : 0;
}

#include <signal.h>
#include <spawn.h>
extern char **environ;

int zuma_spawn_detached(const char *path, char *const argv[], int pass_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pass_fd, 3);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) { errno = rc; return -1; }
    return pid;
}

/* Filesystem freeze around a snapshot, and zeroing a device. */

#include <sys/stat.h>

static int fs_ioctl(const char *mount_point, unsigned long request) {
    int fd = open(mount_point, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = ioctl(fd, request, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int zuma_freeze(const char *mount_point) { return fs_ioctl(mount_point, FIFREEZE); }

int zuma_thaw(const char *mount_point) { return fs_ioctl(mount_point, FITHAW); }

// BLKZEROOUT on a block device; on a file, one fallocate mode, then the other.
static int zero_range(int fd, uint64_t offset, uint64_t length, int first, int second) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    if (S_ISBLK(st.st_mode)) {
        uint64_t range[2] = { offset, length };
        return ioctl(fd, BLKZEROOUT, range);
    }
    if (fallocate(fd, first | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) == 0) return 0;
    return fallocate(fd, second | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

int zuma_punch_zeros(int fd, uint64_t offset, uint64_t length) {
    return zero_range(fd, offset, length, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE);
}

int zuma_zero_range(int fd, uint64_t offset, uint64_t length) {
    return zero_range(fd, offset, length, FALLOC_FL_ZERO_RANGE, FALLOC_FL_PUNCH_HOLE);
}

int zuma_clone_range(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t length) {
    struct file_clone_range range = {
        .src_fd = in, .src_offset = in_offset, .src_length = length, .dest_offset = out_offset,
    };
    return ioctl(out, FICLONERANGE, &range);
}

int zuma_copy_range(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t length) {
    off64_t from = (off64_t)in_offset, to = (off64_t)out_offset;
    uint64_t done = 0;
    while (done < length) {
        ssize_t n = copy_file_range(in, &from, out, &to, (size_t)(length - done), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        done += (uint64_t)n;
    }
    return 0;
}

int zuma_start_writeback(int fd, uint64_t offset, uint64_t length) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE);
}
