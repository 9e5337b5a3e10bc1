#!/usr/bin/env python3
"""Pick ~N paths (~SIZE MB) of this machine's files for the synthetic closure.

Candidates: entries of /usr/lib/<arch>-linux-gnu (shared libraries: binary,
compresses like real closures) and entries two levels below /usr/share
(docs, locales, data: text, many small files). Only trees of regular files,
directories and symlinks that root can read qualify. Prints one path a line.
Usage: select.py COUNT MEGABYTES
"""
import os, stat, sys, glob

count, megabytes = int(sys.argv[1]), int(sys.argv[2])

def tree_size(p):
    total, files = 0, 0
    try:
        st = os.lstat(p)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return (0, 1)
    if stat.S_ISREG(st.st_mode):
        return (st.st_size, 1)
    if not stat.S_ISDIR(st.st_mode):
        return None
    for dirpath, dirnames, filenames in os.walk(p):
        for n in dirnames + filenames:
            q = os.path.join(dirpath, n)
            st = os.lstat(q)
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
            elif not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                return None
            files += 1
    return (total, files)

def ok_name(p):
    base = os.path.basename(p)
    return base and not base.startswith(".") and all(c.isalnum() or c in "+-._?=" for c in base)

libs = sorted(glob.glob("/usr/lib/*-linux-gnu/*"))
share = sorted(glob.glob("/usr/share/*/*"))
picked, size = [], 0
budget_lib = megabytes * 1e6 * 0.6
for group, budget, cap in ((libs, budget_lib, 20e6), (share, megabytes * 1e6, 1e6)):
    for p in group:
        if len(picked) >= count or size >= budget:
            break
        if not ok_name(p):
            continue
        s = tree_size(p)
        if s is None or s[0] > cap:
            continue
        picked.append(p)
        size += s[0]
print("\n".join(picked))
print(f"{len(picked)} paths, {size/1e6:.0f} MB of file data", file=sys.stderr)
