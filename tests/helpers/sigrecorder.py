"""Test app: prints every signal it receives, one number per line, until stdin closes.

With --fork it also starts one child that prints "child N" for each signal and exits on SIGTERM,
so tests can tell signals sent to the app from signals sent to its process group.
"""
import os
import signal
import sys

UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


def install(prefix, exit_on_term):
    def handler(signum, _frame):
        print(f"{prefix}{signum}", flush=True)
        if exit_on_term and signum == signal.SIGTERM:
            os._exit(0)

    for n in range(1, signal.NSIG):
        if n in UNCATCHABLE:
            continue
        try:
            signal.signal(n, handler)
        except (OSError, ValueError, RuntimeError):
            pass  # numbers libc reserves for itself


if "--fork" in sys.argv:
    if os.fork() == 0:
        install("child ", exit_on_term=True)
        print("child ready", flush=True)
        while True:
            signal.pause()

install("", exit_on_term=False)
print("ready", flush=True)
sys.stdin.read()
