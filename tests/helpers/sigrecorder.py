"""Test app: prints every signal it receives, one number per line, until stdin closes.

With --fork it also starts one child that prints "child N" for each signal and exits on SIGTERM,
so tests can tell signals sent to the app from signals sent to its process group.

Signals are noticed through a wakeup fd and select(): a signal that lands just before a blocking
read would otherwise have its Python handler postponed until the read returns.
"""
import os
import select
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
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    return wake_r


def serve(wake_r, watch_stdin):
    fds = [wake_r, 0] if watch_stdin else [wake_r]
    while True:
        ready, _, _ = select.select(fds, [], [])  # handlers run as soon as select returns
        if wake_r in ready:
            os.read(wake_r, 4096)
        if 0 in ready and not os.read(0, 4096):
            return


if "--fork" in sys.argv and os.fork() == 0:
    wake = install("child ", exit_on_term=True)
    say("child ready")
    serve(wake, watch_stdin=False)

wake = install("", exit_on_term=False)
say("ready")
serve(wake, watch_stdin=True)
