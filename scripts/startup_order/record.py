"""gdb script: run the bridge with a one-shot breakpoint on the entry of each of
its functions and write the entry offsets in the order they are first hit.

Run by scripts/startup-order.sh as
  gdb -q -batch -x record.py --args BINARY
with STARTUP_ORDER_FUNCTIONS (a file of hex offsets, one function each) and
STARTUP_ORDER_HITS (the output file) in the environment.
"""
import os

import gdb  # provided by gdb when it runs this file

binary = gdb.current_progspace().filename
functions = [int(line, 16) for line in open(os.environ["STARTUP_ORDER_FUNCTIONS"]) if line.strip()]
gdb.execute("set pagination off")
gdb.execute("set confirm off")
# Inserting and removing thousands of breakpoints at every stop would take minutes.
gdb.execute("set breakpoint always-inserted on")
gdb.execute("starti", to_string=True)
# nm prints addresses from 0 for a position-independent executable (loaded
# at a base chosen at exec) and the addresses themselves for a
# position-dependent one (ELF e_type 2, linked with -no-pie: see build.rs).
with open(binary, "rb") as elf:
    position_dependent = elf.read(18)[16:18] == b"\x02\x00"
if position_dependent:
    base = 0
else:
    mappings = gdb.execute("info proc mappings", to_string=True)
    base = min(int(line.split()[0], 16) for line in mappings.splitlines()
               if line.strip().endswith(os.path.realpath(binary)))
for offset in functions:
    gdb.Breakpoint(f"*{base + offset:#x}", temporary=True, internal=True)
with open(os.environ["STARTUP_ORDER_HITS"], "w") as hits:
    while gdb.selected_inferior().pid:
        gdb.execute("continue", to_string=True)
        if not gdb.selected_inferior().pid:
            break
        hits.write(f"{int(gdb.parse_and_eval('$pc')) - base:x}\n")
        hits.flush()
