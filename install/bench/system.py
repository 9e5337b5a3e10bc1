#!/usr/bin/env python3
"""Pick store path sources shaped like a NixOS system closure.

A system closure is ~800 paths, ~1 GB of NAR and ~60k files: most paths are
directories of many small files (a package's bin, lib, share), a few are
big single files. Candidates are this machine's directories two levels
below /usr/lib and /usr/share (and /usr/include's entries), and its shared
libraries; only trees of regular files, directories and symlinks that root
can read qualify. SCALE (default 1) scales the count and the size. Prints
one path a line, and the totals to stderr.
Usage: system.py [SCALE]
"""
import glob, hashlib, os, stat, sys

scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
want_paths, want_bytes = int(800 * scale), 1e9 * scale


def tree(p):
    total, files = 0, 0
    try:
        st = os.lstat(p)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return (st.st_size, 1)
    if not stat.S_ISDIR(st.st_mode):
        return None
    for dirpath, dirnames, filenames in os.walk(p):
        for n in dirnames + filenames:
            q = os.path.join(dirpath, n)
            try:
                st = os.lstat(q)
            except OSError:
                return None
            if stat.S_ISREG(st.st_mode):
                if not os.access(q, os.R_OK):
                    return None
                total += st.st_size
            elif not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                return None
            files += 1
    return (total, files)


def ok_name(p):
    base = os.path.basename(p)
    return base and not base.startswith(".") and all(c.isalnum() or c in "+-._?=" for c in base)


def spread(paths):
    # A fixed order that mixes the trees, as a closure mixes packages.
    return sorted(paths, key=lambda p: hashlib.sha256(p.encode()).hexdigest())


dirs, singles = [], []
for p in spread(glob.glob("/usr/lib/*/*") + glob.glob("/usr/share/*/*") + glob.glob("/usr/include/*")):
    if not ok_name(p) or os.path.islink(p):
        continue
    if os.path.isdir(p):
        dirs.append(p)
    elif os.path.isfile(p):
        singles.append(p)

picked, size, files = [], 0, 0
# Most paths: directories of 25 to 4000 files, 50 kB to 40 MB.
for p in dirs:
    if len(picked) >= want_paths * 0.9 or size >= want_bytes * 0.85:
        break
    t = tree(p)
    if t is None or not (25 <= t[1] <= 4000) or t[0] > 40e6 or t[0] < 50e3:
        continue
    picked.append(p)
    size += t[0]
    files += t[1]
# The rest: single files (shared libraries, data) up to 30 MB.
for p in singles:
    if len(picked) >= want_paths or size >= want_bytes:
        break
    t = tree(p)
    if t is None or t[0] > 30e6 or t[0] < 4e3:
        continue
    picked.append(p)
    size += t[0]
    files += t[1]
print("\n".join(picked))
print(f"{len(picked)} paths, {size/1e6:.0f} MB of file data, {files} files", file=sys.stderr)
