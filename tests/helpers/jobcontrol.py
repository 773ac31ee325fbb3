"""Test driver: an interactive bash on a pseudo-terminal runs `meshwait -- APP...` as a job, the
way a person at a terminal would: the job stops, `fg` resumes it, a line of input and Ctrl-D end it.

    jobcontrol.py MESHWAIT MODE APP [ARGS...]

MODE says how the job comes to stop:
  ctrl-z       started in the foreground, then Ctrl-Z;
  background   started with `&`; its first read of the terminal stops it (SIGTTIN);
  self         the app stops itself (as editors do when they suspend);
  orphaned     started as `(job &)`, so meshwait's parent exits at once and its process group is
               orphaned: no shell can resume it. Prints "stopped-left N", the number of stopped
               processes left in the terminal's session a moment later, and nothing else.

Prints "stopped" when bash reported the job stopped (or "not-stopped" with what the terminal
showed), then "exit N" with meshwait's exit status, then "output ..." with every terminal line
that starts with "app:". The app reads the terminal after `fg`, so it only gets its input (and
the EOF that ends it) if the terminal was handed back to the app's process group.
"""
import os
import pty
import re
import select
import shlex
import sys
import time

meshwait, mode, app = sys.argv[1], sys.argv[2], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    env = {"PATH": os.environ["PATH"], "TERM": "dumb"}
    os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)

transcript = b""
unread = b""  # read from the terminal but not yet matched


def read_until(pattern, timeout=5.0):
    """Waits for `pattern` in the terminal output after the previous match."""
    global transcript, unread
    deadline = time.time() + timeout
    while True:
        match = re.search(pattern, unread)
        if match:
            seen, unread = unread[: match.end()], unread[match.end():]
            return match, seen
        if time.time() >= deadline:
            seen, unread = unread, b""
            return None, seen
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                seen, unread = unread, b""
                return None, seen
            unread += chunk
            transcript += chunk


def run(line):
    os.write(fd, line.encode() + b"\n")


try:
    run("PS1='P''ROMPT> '")  # quoted so the echoed command does not match the prompt
    read_until(rb"PROMPT> ")
    job = f"{shlex.quote(meshwait)} --mesh none -- {shlex.join(app)}"
    if mode == "orphaned":
        run(f"({job} </dev/tty &)")  # a background job in a subshell would get /dev/null
        time.sleep(1.5)
        left = 0
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.getsid(int(entry)) == pid:
                    with open(f"/proc/{entry}/stat") as f:
                        left += f.read().rsplit(")", 1)[1].split()[0] == "T"
            except OSError:
                pass
        print(f"stopped-left {left}", flush=True)
        sys.exit(0)
    if mode == "background":
        run(job + " &")
        time.sleep(0.7)
        run("")  # bash reports job state changes before the next prompt
    else:
        run(job)
        time.sleep(0.7)
        if mode == "ctrl-z":
            os.write(fd, b"\x1a")
    stopped, seen = read_until(rb"Stopped")
    print("stopped" if stopped else f"not-stopped {seen!r}", flush=True)
    if stopped:
        read_until(rb"PROMPT> ")
        run("fg")
        time.sleep(0.7)
        run("ping")
        time.sleep(0.3)
        os.write(fd, b"\x04")  # Ctrl-D: end of input
        read_until(rb"PROMPT> ")
        run("echo status=$?")
        status, seen = read_until(rb"status=(\d+)")
        print(f"exit {status.group(1).decode()}" if status else f"no-status {seen!r}", flush=True)
    lines = re.findall(rb"^app:[^\r\n]*", transcript, re.M)
    print("output", " | ".join(line.decode() for line in lines), flush=True)
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
