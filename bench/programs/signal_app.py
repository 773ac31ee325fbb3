"""The app of bench/core.py's figure 5 (signal forwarding), run under each wrapper.

    python3 signal_app.py

Prints `ready`, then the wall clock (time.time_ns) from its SIGUSR1 handler at each signal.
Otherwise it blocks in read(stdin), which the signal interrupts (Python runs the handler, then
resumes the read), and exits when stdin closes. os.write: no buffering between the handler and
the pipe.
"""

import os, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: os.write(1, b"%d\n" % time.time_ns()))
os.write(1, b"ready\n")
sys.stdin.buffer.read()
