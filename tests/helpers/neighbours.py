"""Test init: PID 1 of a PID namespace of its own, with neighbours that call themselves meshwait,
then runs a doctor and passes on its output and exit code.

    neighbours.py MESHWAIT WHERE ARG -- DOCTOR...

Leaves an unreaped meshwait (a zombie: its comm is still "meshwait", its argv reads empty), and
starts `MESHWAIT --mesh none --no-wait -- sh -c 'sleep 60' ARG`, a real meshwait in run mode
whose argv holds ARG. WHERE is "here" (in this mount namespace, as the app's own meshwait would
be) or "elsewhere" (a mount namespace of its own, as another container's process is with
`shareProcessNamespace: true`). Prints "neighbours Z M" (the zombie's and the meshwait's pids)
before the doctor's output.
"""
import os
import subprocess
import sys
import time

meshwait, where, arg = sys.argv[1:4]
doctor = sys.argv[sys.argv.index("--") + 1:]


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def until(what, check):
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"neighbours.py: {what} did not happen")
        time.sleep(0.02)


quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
zombie = subprocess.Popen([meshwait, "--mesh", "none", "--no-wait", "--", "true"], **quiet)
# Never waited for: as PID 1 without a SIGCHLD handler, this stays a zombie.
until("the zombie", lambda: stat(zombie.pid) == "Z")

prefix = ["unshare", "--mount", "--"] if where == "elsewhere" else []
run = [meshwait, "--mesh", "none", "--no-wait", "--", "sh", "-c", "sleep 60", arg]
neighbour = subprocess.Popen(prefix + run, **quiet)


def supervising():
    try:
        return comm(neighbour.pid) == "meshwait" and any(
            comm(int(c)) in ("sh", "sleep")
            for c in open(f"/proc/{neighbour.pid}/task/{neighbour.pid}/children").read().split()
        )
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False


until("the meshwait neighbour", supervising)
print(f"neighbours {zombie.pid} {neighbour.pid}", flush=True)
result = subprocess.run(doctor)
neighbour.kill()
sys.exit(result.returncode)
