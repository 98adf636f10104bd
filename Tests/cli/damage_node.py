#!/usr/bin/env python3
"""Damages a snapshot store the way issue 18's tree bug did: in the newest commit, the root
node of a tree that this commit rewrote (its root differs from the other slot's) gets entries 1
and 2 swapped, and the block is sealed again with a valid checksum, so only the key order gives
it away. When the commit lists the node in a verified run, the run's CRC and the superblock are
sealed again too, as the buggy writer itself would have left them.

Usage: damage_node.py STORE      (prints the damaged commit's sequence and the node's address)
Offsets are docs/FORMAT.md's: superblock slot n at byte n * CS; sequence at 24, chunk size at
32, incompatible features at 36, tree roots at 112 + 24 i (tags: 1256), index block count at
236, run count at 244, runs at 1280 + 8 I (address u64, count u32, CRC u32); a node's header is
32 bytes (entry count at 24, value words at 28), its entries 16 + 8 W bytes.
"""
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(data, seed=0):
    crc = seed ^ 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def salt(block_type):
    return (block_type * 0x9E3779B9) & 0xFFFFFFFF


def roots(sb):
    out = [struct.unpack_from("<Q", sb, 112 + 24 * i)[0] for i in range(4)]
    if struct.unpack_from("<I", sb, 36)[0] & 0x4:
        out.append(struct.unpack_from("<Q", sb, 1256)[0])
    return out


def main(path):
    with open(path, "r+b") as f:
        cs = struct.unpack_from("<I", f.read(64), 32)[0]
        slots = []
        for slot in (0, 1):
            f.seek(slot * cs)
            sb = bytearray(f.read(4096))
            if sb[8:16] == b"ZUMASNAP":
                slots.append((struct.unpack_from("<Q", sb, 24)[0], slot, sb))
        slots.sort(reverse=True)
        seq, slot, sb = slots[0]
        other = roots(slots[1][2]) if len(slots) > 1 else []
        for i, root in enumerate(roots(sb)):
            if root == 0 or (i < len(other) and other[i] == root):
                continue
            f.seek(root * cs)
            node = bytearray(f.read(cs))
            count, words = struct.unpack_from("<II", node, 24)
            if count >= 3:
                break
        else:
            sys.exit("no tree root of the newest commit that it alone uses holds 3 entries")
        size = 16 + 8 * words
        a, b = 32 + size, 32 + 2 * size
        node[a:b], node[b:b + size] = node[b:b + size], node[a:b]
        struct.pack_into("<I", node, 0, crc32c(bytes(node[4:]), salt(0x4E44)))
        f.seek(root * cs)
        f.write(node)
        index_blocks, runs = struct.unpack_from("<I", sb, 236)[0], struct.unpack_from("<I", sb, 244)[0]
        for r in range(runs):
            at = 1280 + 8 * index_blocks + 16 * r
            address, n = struct.unpack_from("<QI", sb, at)
            if address <= root < address + n:
                f.seek(address * cs)
                struct.pack_into("<I", sb, at + 12, crc32c(f.read(n * cs)))
                struct.pack_into("<I", sb, 0, crc32c(bytes(sb[4:]), salt(0x5342)))
                f.seek(slot * cs)
                f.write(sb)
    print(seq, root)


main(sys.argv[1])
