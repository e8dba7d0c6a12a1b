"""Writes the linker script that places the bridge's functions in the order it
first runs them (init first, then an invocation, then shutdown).

Usage: write_script.py SYMBOLS HITS INIT_HITS [HITS INIT_HITS ...] > scripts/startup-order.ld
SYMBOLS: `nm --defined-only -S` of the unstripped release binary;
HITS: function entry offsets in first-hit order (record.py), one file per
recorded run (the first with the default configuration, then variants);
INIT_HITS: how many lines of that HITS file were written by the end of the
init (the first /next and the work started while it is pending).

The init's functions of the first run come first, then those the other
runs' inits add (e.g. fetching headers from a secret), then padding to the
next 64 KiB, then the rest of each run. The padding keeps the blocks the
kernel maps around the init's page faults (64 KiB aligned by default) from
reaching into invocation code; measured with `BENCH_ONLY=share cargo bench
--bench process`, it took the resident memory after init from 4.3 to
4.0 MiB, for 0-64 KiB of padding that compresses to nothing in the zip.

A function is named without what a rebuild with other dependencies or
another compiler changes (the legacy `17h<hash>E` suffix, v0 crate
disambiguators `Cs<hash>_`, LTO's `.llvm.<n>` suffix) where that name is
its own in the binary, so the script stays good across such changes.
Instances of a generic function share that name: those are named exactly
where they were run, and by the shared name only after all functions run
(the other instances, and the run ones should the exact names go stale).
A pattern that matches nothing is ignored by the linker.

With LIBC_ARCHIVE set (the path of `libc.a`: the shipped binary links glibc
statically), a C library function that was run is placed by its archive
member (`*libc.a:memset.o(.text .text.*)`, the whole object: glibc's objects
have no section per function), at the place of its first run.
"""
import collections
import os
import re
import subprocess
import sys

symbols = {}
for line in open(sys.argv[1]):
    fields = line.split()
    if len(fields) == 4 and fields[2] in ("t", "T"):
        symbols.setdefault(int(fields[0], 16), fields[3])


def first_hits(path, init_lines):
    """The run's functions in first-hit order, and how many ran in its init."""
    order, seen, init = [], set(), 0
    for number, line in enumerate(open(path)):
        name = symbols.get(int(line, 16))
        if name and name not in seen:
            seen.add(name)
            order.append(name)
        if number + 1 == init_lines:
            init = len(order)
    return order, init


runs = [first_hits(sys.argv[i], int(sys.argv[i + 1])) for i in range(2, len(sys.argv), 2)]
order, in_script = [], set()


def place(names):
    for name in names:
        if name not in in_script:
            in_script.add(name)
            order.append(name)


for run, init in runs:
    place(run[:init])
init_functions = len(order)
for run, init in runs:
    place(run[init:])


def without_lto_suffix(name):
    return re.sub(r"\.llvm\.\d+$", "", name)


def general(name):
    name = re.sub(r"17h[0-9a-f]{16}E", "17h*E", without_lto_suffix(name))
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name) if name.startswith("_R") else name


def section(pattern):
    return f"    *(.text.{pattern})"


def archive_members(archive):
    """Function name -> the member of `archive` that defines it."""
    if not archive:
        return {}
    listing = subprocess.run(["nm", "-A", "--defined-only", archive],
                             capture_output=True, text=True, check=True).stdout
    members = {}
    for line in listing.splitlines():
        # /usr/lib/x86_64-linux-gnu/libc.a:memset.o:0000000000000000 T memset
        location, _, rest = line.rpartition(":")
        fields = rest.split()
        if len(fields) == 3 and fields[1] in "tTWi":
            members.setdefault(fields[2], location.rpartition(":")[2])
    return members


libc_members = archive_members(os.environ.get("LIBC_ARCHIVE"))
sharing = collections.Counter(general(name) for name in symbols.values())
in_order, afterwards, placed = [], [], set()
for position, name in enumerate(order):
    if position == init_functions:
        in_order.append("    . = ALIGN(0x10000);")
    if name == "main":
        in_order.append(section("main"))
        continue
    if name in libc_members:
        member = libc_members[name]
        if member not in placed:
            placed.add(member)
            in_order.append(f"    *libc.a:{member}(.text .text.*)")
        continue
    if not (name.startswith("_ZN") or name.startswith("_R")):
        continue  # C objects (crt, ring's assembly): not in sections of their own
    shared = general(name)
    if sharing[shared] == 1:
        in_order.append(section(f"*{shared}*"))
        continue
    in_order.append(section(f"*{without_lto_suffix(name)}*"))
    if shared not in placed:
        placed.add(shared)
        afterwards.append(section(f"*{shared}*"))

print("/* Generated by scripts/startup-order.sh: the bridge's functions in the order")
print("   its init, one invocation and SHUTDOWN first run them, so that start-up")
print(f"   touches few pages of the binary: {len(order)} functions, the first {init_functions}")
print("   run by the end of the init, then padding to a 64 KiB boundary. Linked")
if os.environ.get("LIBC_ARCHIVE"):
    print("   by build.rs into release binaries with glibc linked statically (the")
    print("   shipped one); BRIDGE_STARTUP_ORDER=0 builds without it. */")
else:
    print("   by build.rs into release binaries with glibc linked dynamically (a plain")
    print("   `cargo build --release`); BRIDGE_STARTUP_ORDER=0 builds without it. */")
print("SECTIONS {")
print("  .text.startup_order : {")
for line in in_order + afterwards:
    print(line)
print("  }")
print("}")
print("INSERT BEFORE .text;")
