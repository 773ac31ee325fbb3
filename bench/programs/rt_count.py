"""The app of bench/core.py's figure 5b (a burst of real-time signals), run under each init.

    python3 rt_count.py OUT QUIET

Blocks SIGRTMIN+1 and prints `ready`; from then on every instance the kernel queues is dequeued
one at a time (sigtimedwait), so none merge here. Once none has come for QUIET seconds after the
first (or for 30 s before it), writes the count to OUT and exits.
"""

import signal
import sys

out, quiet = sys.argv[1], float(sys.argv[2])
rt = signal.SIGRTMIN + 1
signal.pthread_sigmask(signal.SIG_BLOCK, [rt])
print("ready", flush=True)
n = 0
while signal.sigtimedwait([rt], quiet if n else 30) is not None:
    n += 1
with open(out, "w") as f:
    f.write(f"{n}\n")
