"""Test app: prints every signal it receives, one number per line, until stdin closes.

With --fork it also starts one child that prints "child N" for each signal and exits on SIGTERM,
so tests can tell signals sent to the app from signals sent to its process group.
"""
import os
import signal
import sys

UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


def say(text):
    # One write(2) per line: two processes share this pipe, and print() may split a line.
    os.write(1, (text + "\n").encode())


def install(prefix, exit_on_term):
    def handler(signum, _frame):
        say(f"{prefix}{signum}")
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
        say("child ready")
        while True:
            signal.pause()

install("", exit_on_term=False)
say("ready")
sys.stdin.read()
