"""Test app for job control: copies the terminal to stdout until EOF, then reports what was
delivered to it as "app: conts=N hangups=M" (SIGCONTs and SIGHUPs), with " child=STATE" added
when it has a child.

Options:
  --self-stop        first stop its own process group with SIGSTOP, as editors do when they
                     suspend;
  --survive-hup      handle SIGHUP (say "countcont hung up") instead of dying of it;
  --set-terminal     set the terminal's attributes (to what they are) before reading it: from a
                     background group that stops the app with SIGTTOU;
  --give-up-on-cont  a SIGCONT during the read ends the read for good: the app then waits 2 s
                     and reports without reading the terminal again;
  --with-child       start a child in the app's process group that sleeps; the report gives its
                     state at the end (running, or stopped if it was left stopped);
  --no-read          do not read the terminal: wait 0.3 s and report.

Deliveries are counted from the wakeup fd, one byte per delivery at the C level, because
Python-level handlers merge deliveries that arrive close together. For the driver to follow
along it also says "countcont ready" just before its first read of the terminal and "countcont
continued" when a SIGCONT reaches its Python-level handler (neither starts with "app:").
"""
import errno
import os
import signal
import sys
import termios
import time


class GiveUp(Exception):
    pass


wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)


def on_cont(_signum, _frame):
    # os.write, not print: the handler may run while the main thread is inside print's flush (a
    # SIGCONT right after "countcont ready"), and a nested print on the same buffer raises.
    os.write(1, b"countcont continued\n")
    if "--give-up-on-cont" in sys.argv:
        raise GiveUp()


signal.signal(signal.SIGCONT, on_cont)
if "--survive-hup" in sys.argv:
    signal.signal(signal.SIGHUP, lambda _signum, _frame: os.write(1, b"countcont hung up\n"))
signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
child = None
if "--with-child" in sys.argv:
    settled_r, settled_w = os.pipe()
    child = os.fork()
    if child == 0:
        # Only the app reports: the child's handlers and wakeup pipe are the app's copies, and
        # must be dropped before anything can stop and continue the child.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCONT, signal.SIG_DFL)
        os.close(wake_w)
        os.close(settled_w)
        time.sleep(60)
        os._exit(0)
    os.close(settled_w)
    os.read(settled_r, 1)  # end of file once the child has dropped them
    os.close(settled_r)
if "--self-stop" in sys.argv:
    os.kill(0, signal.SIGSTOP)
print("countcont ready", flush=True)
try:
    while "--set-terminal" in sys.argv:
        try:
            termios.tcsetattr(0, termios.TCSANOW, termios.tcgetattr(0))
            break
        except termios.error as e:
            if e.args[0] != errno.EINTR:  # the SIGCONT that ended the stop
                raise
    if "--no-read" in sys.argv:
        time.sleep(0.3)
    else:
        for line in sys.stdin:
            sys.stdout.write(line)
except GiveUp:
    signal.signal(signal.SIGCONT, lambda _signum, _frame: os.write(1, b"countcont continued\n"))
    time.sleep(2)
try:
    delivered = os.read(wake_r, 4096)
except BlockingIOError:
    delivered = b""
report = (
    f"app: conts={delivered.count(bytes([signal.SIGCONT]))}"
    f" hangups={delivered.count(bytes([signal.SIGHUP]))}"
)
if child:
    with open(f"/proc/{child}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    report += " child=" + ("stopped" if state in "Tt" else "running")
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
print(report, flush=True)
