#!/usr/bin/env python3
"""treediff.py A B: compares two directory trees entry by entry.

Compares every path's type, mode (all bits), uid, gid, size, content
(sha256), symlink target, device numbers, xattrs, mtime of non-directories,
and which paths are hard links of each other. Prints each difference and
exits 1 if there is any; prints the number of entries compared otherwise.
"""
import hashlib
import os
import stat
import sys


def describe(root):
    entries = {}
    inode_paths = {}
    add(root, root, entries, inode_paths)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            add(root, os.path.join(dirpath, name), entries, inode_paths)
    links = sorted(tuple(sorted(v)) for v in inode_paths.values() if len(v) > 1)
    return entries, links


def add(root, path, entries, inode_paths):
    rel = os.path.relpath(path, root)
    st = os.lstat(path)
    d = {
        "type": stat.S_IFMT(st.st_mode),
        "mode": oct(stat.S_IMODE(st.st_mode)),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }
    if stat.S_ISREG(st.st_mode):
        d["size"] = st.st_size
        with open(path, "rb") as f:
            d["sha256"] = hashlib.sha256(f.read()).hexdigest()
        inode_paths.setdefault((st.st_dev, st.st_ino), []).append(rel)
    if stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        d["mtime"] = st.st_mtime_ns
    try:
        d["xattrs"] = {k: os.getxattr(path, k, follow_symlinks=False)
                       for k in sorted(os.listxattr(path, follow_symlinks=False))}
    except OSError:
        d["xattrs"] = "unsupported"
    entries[rel] = d


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    a, alinks = describe(sys.argv[1])
    b, blinks = describe(sys.argv[2])
    diffs = []
    for p in sorted(set(a) | set(b)):
        if p not in a:
            diffs.append(f"only in B: {p}")
        elif p not in b:
            diffs.append(f"only in A: {p}")
        elif a[p] != b[p]:
            keys = sorted(k for k in set(a[p]) | set(b[p]) if a[p].get(k) != b[p].get(k))
            for k in keys:
                diffs.append(f"{p}: {k}: A={a[p].get(k)!r} B={b[p].get(k)!r}")
    if alinks != blinks:
        diffs.append(f"hard links differ: A={alinks} B={blinks}")
    for d in diffs:
        print(d)
    if diffs:
        return 1
    print(f"identical: {len(a)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
