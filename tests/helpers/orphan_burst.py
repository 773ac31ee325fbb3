"""Test app: leaves orphans that all exit in the same instant, and counts the zombies left.

    orphan_burst.py N

A middle process forks N grandchildren, each blocked reading one pipe, and exits, so they are
reparented to whoever reaps orphans here. The app then closes the pipe's only write end: every
grandchild reads EOF and exits at once, so their SIGCHLDs merge into one (standard signals do not
queue). Prints "zombies K" with the number still unreaped half a second later.
"""
import os
import sys
import time

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 8

gate_read, gate_write = os.pipe()
report_read, report_write = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(gate_write)
    os.close(report_read)
    pids = []
    for _ in range(COUNT):
        pid = os.fork()
        if pid == 0:
            os.close(report_write)
            os.read(gate_read, 1)  # EOF when the app closes the write end
            os._exit(0)
        pids.append(pid)
    os.write(report_write, (" ".join(map(str, pids)) + "\n").encode())
    os._exit(0)
os.close(gate_read)
os.close(report_write)
orphans = [int(p) for p in os.fdopen(report_read).read().split()]
os.waitpid(middle, 0)
time.sleep(0.2)  # every grandchild is blocked in its read by now


def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


os.close(gate_write)
time.sleep(0.5)
print("zombies", sum(1 for p in orphans if state(p) == "Z"), flush=True)
