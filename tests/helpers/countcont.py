"""Test app for job control: copies the terminal to stdout until EOF, then prints how many
SIGCONTs were delivered to it, as "app: conts=N". With --self-stop it first stops its own
process group with SIGSTOP, as editors do when they suspend.

Deliveries are counted from the wakeup fd, one byte per delivery at the C level, because
Python-level handlers merge deliveries that arrive close together. For the driver to follow
along it also says "countcont ready" just before its first read of the terminal and "countcont
continued" when a SIGCONT reaches its Python-level handler (neither starts with "app:").
"""
import os
import signal
import sys

wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
# os.write, not print: the handler may run while the main thread is inside print's flush (a
# SIGCONT right after "countcont ready"), and a nested print on the same buffer raises.
signal.signal(signal.SIGCONT, lambda _signum, _frame: os.write(1, b"countcont continued\n"))
signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
if "--self-stop" in sys.argv:
    os.kill(0, signal.SIGSTOP)
print("countcont ready", flush=True)
for line in sys.stdin:
    sys.stdout.write(line)
try:
    delivered = os.read(wake_r, 4096)
except BlockingIOError:
    delivered = b""
print(f"app: conts={delivered.count(bytes([signal.SIGCONT]))}", flush=True)
