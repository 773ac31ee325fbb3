"""Test app: leaves orphans behind and reports whether whoever adopted them reaped them.

Prints "adopted-by N" (the pid the orphans were reparented to) and then "unreaped K", the
number of orphans still present as zombies after they have all exited.
"""
import os
import sys
import time

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def state_and_ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[1])
    except (FileNotFoundError, ProcessLookupError):
        return None, None


read_end, write_end = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(read_end)
    pids = []
    for i in range(COUNT):
        pid = os.fork()
        if pid == 0:
            os.close(write_end)  # or the parent's read would wait for us to exit
            time.sleep(0.3 + 0.05 * i)
            os._exit(0)
        pids.append(pid)
    os.write(write_end, (" ".join(map(str, pids)) + "\n").encode())
    os._exit(0)  # the grandchildren become orphans
os.close(write_end)
orphans = [int(p) for p in os.fdopen(read_end).read().split()]
os.waitpid(middle, 0)

time.sleep(0.1)
print("adopted-by", state_and_ppid(orphans[0])[1], flush=True)

deadline = time.time() + 5
while time.time() < deadline:
    left = [p for p in orphans if state_and_ppid(p)[0] is not None]
    if not left:
        break
    time.sleep(0.05)
zombies = [p for p in orphans if state_and_ppid(p)[0] == "Z"]
alive = [p for p in orphans if state_and_ppid(p)[0] not in (None, "Z")]
print("unreaped", len(zombies), "alive", len(alive), flush=True)
