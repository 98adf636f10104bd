// The libfuse3 low-level session for block files: a flat directory of regular files whose
// contents are served by Swift callbacks. Requests up to 1 MiB, direct I/O (no page cache,
// so a loop device with direct I/O sees exactly what the store holds), several threads.
#define FUSE_USE_VERSION 314
#define _GNU_SOURCE
#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include "CFuse.h"

#define ZUMA_FUSE_MAX_IO (1u << 20)

struct zuma_fuse {
    struct fuse_session *session;
    struct zuma_fuse_callbacks callbacks;
    void *ctx;
    char *mountpoint;
    int mounted;
};

static struct zuma_fuse *self_of(fuse_req_t req) { return (struct zuma_fuse *)fuse_req_userdata(req); }

static void fill_attr(const struct zuma_fuse_node *node, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = node->ino;
    st->st_nlink = 1;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_blksize = 4096;
    st->st_mtim.tv_sec = (time_t)(node->mtime_ns / 1000000000u);
    st->st_mtim.tv_nsec = (long)(node->mtime_ns % 1000000000u);
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
    if (node->ino == FUSE_ROOT_ID) {
        st->st_mode = S_IFDIR | 0700;
        st->st_nlink = 2;
        return;
    }
    st->st_mode = S_IFREG | (node->writable ? 0600 : 0400);
    st->st_size = (off_t)node->size;
    st->st_blocks = (blkcnt_t)((node->size + 511) / 512);
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
    (void)userdata;
    conn->max_write = ZUMA_FUSE_MAX_IO;
    conn->max_read = ZUMA_FUSE_MAX_IO;
    conn->max_readahead = 0;
    // Block files are never cached: the kernel must not keep pages of a file whose bytes
    // another file's writes can change (a snapshot reading the origin).
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    struct zuma_fuse *f = self_of(req);
    if (parent != FUSE_ROOT_ID) { fuse_reply_err(req, ENOENT); return; }
    struct zuma_fuse_node node;
    int err = f->callbacks.lookup(f->ctx, name, &node);
    if (err) { fuse_reply_err(req, err); return; }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = node.ino;
    e.generation = node.generation;
    fill_attr(&node, &e.attr);
    e.attr_timeout = 0;
    e.entry_timeout = 0;
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    struct zuma_fuse *f = self_of(req);
    struct zuma_fuse_node node = {.ino = ino};
    if (ino != FUSE_ROOT_ID) {
        int err = f->callbacks.getattr(f->ctx, ino, &node);
        if (err) { fuse_reply_err(req, err); return; }
    }
    struct stat st;
    fill_attr(&node, &st);
    fuse_reply_attr(req, &st, 0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
    (void)attr; (void)fi;
    // Block files have a fixed size (resize goes through the control socket); opening
    // with O_TRUNC sends a size change that is accepted only as a no-op at the same size.
    struct zuma_fuse *f = self_of(req);
    struct zuma_fuse_node node = {.ino = ino};
    if (ino != FUSE_ROOT_ID) {
        int err = f->callbacks.getattr(f->ctx, ino, &node);
        if (err) { fuse_reply_err(req, err); return; }
    }
    if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != node.size) { fuse_reply_err(req, EPERM); return; }
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) { fuse_reply_err(req, EPERM); return; }
    struct stat st;
    fill_attr(&node, &st);
    fuse_reply_attr(req, &st, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct zuma_fuse *f = self_of(req);
    if (ino != FUSE_ROOT_ID) { fuse_reply_err(req, ENOTDIR); return; }
    fi->fh = f->callbacks.opendir(f->ctx);
    fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino;
    struct zuma_fuse *f = self_of(req);
    char *buffer = malloc(size);
    if (!buffer) { fuse_reply_err(req, ENOMEM); return; }
    size_t used = 0;
    // Offsets: 0 ".", 1 "..", then entry (off - 2) of the listing.
    for (off_t at = off;; at++) {
        struct zuma_fuse_node node = {.ino = FUSE_ROOT_ID};
        char name[64];
        if (at == 0) strcpy(name, ".");
        else if (at == 1) strcpy(name, "..");
        else if (f->callbacks.entry(f->ctx, fi->fh, (uint64_t)(at - 2), &node, name, sizeof name)) break;
        struct stat st;
        fill_attr(&node, &st);
        size_t need = fuse_add_direntry(req, buffer + used, size - used, name, &st, at + 1);
        if (need > size - used) break;
        used += need;
    }
    fuse_reply_buf(req, buffer, used);
    free(buffer);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    struct zuma_fuse *f = self_of(req);
    f->callbacks.releasedir(f->ctx, fi->fh);
    fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct zuma_fuse *f = self_of(req);
    int write = (fi->flags & O_ACCMODE) != O_RDONLY;
    int err = f->callbacks.open(f->ctx, ino, write);
    if (err) { fuse_reply_err(req, err); return; }
    fi->direct_io = 1;
    fi->keep_cache = 0;
    fi->noflush = 1;
    fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    struct zuma_fuse *f = self_of(req);
    f->callbacks.release(f->ctx, ino);
    fuse_reply_err(req, 0);
}

static __thread void *read_buffer;

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    struct zuma_fuse *f = self_of(req);
    struct zuma_fuse_node node;
    int err = f->callbacks.getattr(f->ctx, ino, &node);
    if (err) { fuse_reply_err(req, err); return; }
    // A regular file reads short at its end.
    if ((uint64_t)off >= node.size) { fuse_reply_buf(req, NULL, 0); return; }
    if ((uint64_t)off + size > node.size) size = (size_t)(node.size - (uint64_t)off);
    if (size > ZUMA_FUSE_MAX_IO) size = ZUMA_FUSE_MAX_IO;
    if (!read_buffer && posix_memalign(&read_buffer, 4096, ZUMA_FUSE_MAX_IO)) {
        read_buffer = NULL;
        fuse_reply_err(req, ENOMEM);
        return;
    }
    err = f->callbacks.read(f->ctx, ino, read_buffer, size, (uint64_t)off);
    if (err) { fuse_reply_err(req, err); return; }
    fuse_reply_buf(req, read_buffer, size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    struct zuma_fuse *f = self_of(req);
    int err = f->callbacks.write(f->ctx, ino, buf, size, (uint64_t)off);
    if (err) { fuse_reply_err(req, err); return; }
    fuse_reply_write(req, size);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
    (void)datasync; (void)fi;
    struct zuma_fuse *f = self_of(req);
    fuse_reply_err(req, f->callbacks.fsync(f->ctx, ino));
}

// Punch-hole and zero-range with the size kept (what a loop device sends for discard and
// write-zeroes): the range reads as zeros afterwards. Anything else (preallocation, growing
// the file, collapsing or inserting ranges) is not for block files.
static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
    (void)fi;
    struct zuma_fuse *f = self_of(req);
    int zeroing = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) || mode == (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
    if (!zeroing) { fuse_reply_err(req, EOPNOTSUPP); return; }
    if (offset < 0 || length <= 0) { fuse_reply_err(req, EINVAL); return; }
    fuse_reply_err(req, f->callbacks.zero(f->ctx, ino, (uint64_t)offset, (uint64_t)length));
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops operations = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .open = op_open,
    .release = op_release,
    .read = op_read,
    .write = op_write,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .flush = op_flush,
};

struct zuma_fuse *zuma_fuse_mount(const char *mountpoint, const char *fsname,
                                  const struct zuma_fuse_callbacks *callbacks, void *ctx,
                                  char *error, size_t error_cap) {
    struct zuma_fuse *f = calloc(1, sizeof *f);
    if (!f) { snprintf(error, error_cap, "out of memory"); return NULL; }
    f->callbacks = *callbacks;
    f->ctx = ctx;
    f->mountpoint = strdup(mountpoint);
    char fsname_option[300];
    snprintf(fsname_option, sizeof fsname_option, "-ofsname=%s,subtype=ddsnap,default_permissions,max_read=%u", fsname, ZUMA_FUSE_MAX_IO);
    char *argv[] = {"ddsnap", fsname_option, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(2, argv);
    f->session = fuse_session_new(&args, &operations, sizeof operations, f);
    if (!f->session) {
        snprintf(error, error_cap, "cannot start a FUSE session (is /dev/fuse present and the fuse module loaded?)");
        free(f->mountpoint);
        free(f);
        return NULL;
    }
    if (fuse_session_mount(f->session, mountpoint) != 0) {
        snprintf(error, error_cap, "cannot mount the block-file directory at %s (FUSE mount failed)", mountpoint);
        fuse_session_destroy(f->session);
        free(f->mountpoint);
        free(f);
        return NULL;
    }
    f->mounted = 1;
    return f;
}

int zuma_fuse_run(struct zuma_fuse *f, int threads) {
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (!config) return -ENOMEM;
    fuse_loop_cfg_set_max_threads(config, (unsigned)threads);
    fuse_loop_cfg_set_idle_threads(config, (unsigned)threads);
    int rc = fuse_session_loop_mt(f->session, config);
    fuse_loop_cfg_destroy(config);
    return rc;
}

void zuma_fuse_unmount(struct zuma_fuse *f) {
    if (!f->mounted) return;
    f->mounted = 0;
    fuse_session_exit(f->session);
    // The kernel ends the connection when the mount goes away; the request loop then sees
    // ENODEV and returns. A busy mount (an open block file) is detached lazily.
    if (umount2(f->mountpoint, 0) != 0) umount2(f->mountpoint, MNT_DETACH);
}

void zuma_fuse_destroy(struct zuma_fuse *f) {
    fuse_session_unmount(f->session);
    fuse_session_destroy(f->session);
    free(f->mountpoint);
    free(f);
}
