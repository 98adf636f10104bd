#!/usr/bin/env python3
"""Prints the NFSv4 file handle (hex) a real NFS client (libnfs, through ctypes) gets for a file.

Usage: nfs_handle.py nfs://HOST/PATH?version=4&nfsport=PORT

Two runs that print the same handle show that the server gives a client the same handle for
the file: one a client kept from before a restart still names it.
"""
import ctypes
import os
import sys


class NFSURL(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p), ("file", ctypes.c_char_p)]


class NFSFH(ctypes.Structure):
    _fields_ = [("len", ctypes.c_int), ("val", ctypes.POINTER(ctypes.c_ubyte))]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    nfs = ctypes.CDLL("libnfs.so.13")
    nfs.nfs_init_context.restype = ctypes.c_void_p
    nfs.nfs_get_error.restype = ctypes.c_char_p
    nfs.nfs_get_error.argtypes = [ctypes.c_void_p]
    nfs.nfs_parse_url_full.restype = ctypes.POINTER(NFSURL)
    nfs.nfs_parse_url_full.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    nfs.nfs_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    nfs.nfs_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    nfs.nfs_get_fh.restype = ctypes.POINTER(NFSFH)
    nfs.nfs_get_fh.argtypes = [ctypes.c_void_p]
    nfs.nfs_close.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    nfs.nfs_destroy_context.argtypes = [ctypes.c_void_p]

    context = nfs.nfs_init_context()
    url = nfs.nfs_parse_url_full(context, sys.argv[1].encode())
    if not url:
        sys.exit("bad URL: %s" % nfs.nfs_get_error(context).decode())
    if nfs.nfs_mount(context, url.contents.server, url.contents.path) != 0:
        sys.exit("mount failed: %s" % nfs.nfs_get_error(context).decode())
    handle = ctypes.c_void_p()
    if nfs.nfs_open(context, url.contents.file, os.O_RDONLY, ctypes.byref(handle)) != 0:
        sys.exit("open failed: %s" % nfs.nfs_get_error(context).decode())
    fh = nfs.nfs_get_fh(handle).contents
    print(bytes(fh.val[i] for i in range(fh.len)).hex())
    nfs.nfs_close(context, handle)
    nfs.nfs_destroy_context(context)


if __name__ == "__main__":
    main()
