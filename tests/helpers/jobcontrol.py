"""Test driver: an interactive bash on a pseudo-terminal runs `meshwait -- cat`, then Ctrl-Z,
`fg`, a line of input and Ctrl-D, the way a person at a terminal would.

Prints "stopped" when bash reported the job stopped after Ctrl-Z (or "not-stopped" with what the
terminal showed), then "exit N" with meshwait's exit status. cat reads the terminal, so after `fg`
it only gets its input (and the EOF that ends it) if the terminal was handed back to the app; if
not, its read stops it with SIGTTIN and no exit status appears.
"""
import os
import pty
import re
import select
import sys
import time

meshwait = sys.argv[1]
# "ctrl-z": start in the foreground and press Ctrl-Z. "background": start with `&`; cat's first
# read of the terminal then stops it (SIGTTIN), and meshwait must stop with it.
mode = sys.argv[2] if len(sys.argv) > 2 else "ctrl-z"
pid, fd = pty.fork()
if pid == 0:
    os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], {"PATH": os.environ["PATH"], "TERM": "dumb"})


def read_until(pattern, timeout=5.0):
    seen = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
            match = re.search(pattern, seen)
            if match:
                return match, seen
    return None, seen


def run(line):
    os.write(fd, line.encode() + b"\n")


try:
    run("PS1='PROMPT> '")
    read_until(rb"PROMPT> ")
    if mode == "background":
        run(f"{meshwait} --mesh none -- cat &")
        time.sleep(0.7)
        run("")  # bash reports job state changes before the next prompt
    else:
        run(f"{meshwait} --mesh none -- cat")
        time.sleep(0.7)
        os.write(fd, b"\x1a")  # Ctrl-Z
    stopped, seen = read_until(rb"Stopped")
    print("stopped" if stopped else f"not-stopped {seen!r}", flush=True)
    if stopped:
        read_until(rb"PROMPT> ")
        run("fg")
        time.sleep(0.7)
        run("ping")
        time.sleep(0.3)
        os.write(fd, b"\x04")  # Ctrl-D: end of input for cat
        read_until(rb"PROMPT> ")
        run("echo status=$?")
        status, seen = read_until(rb"status=(\d+)")
        print(f"exit {status.group(1).decode()}" if status else f"no-status {seen!r}", flush=True)
finally:
    # Everything started on the terminal belongs to bash's session: end all of it, so a failed
    # run leaves no stopped job behind.
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                if os.getsid(int(entry)) == pid:
                    os.kill(int(entry), 9)
            except OSError:
                pass
    os.kill(pid, 9)
    os.waitpid(pid, 0)
