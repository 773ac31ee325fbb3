"""Test driver: meshwait runs an app on a pseudo-terminal the way a person at a terminal would
use it: the job may stop, `fg` resumes it, a line of input and Ctrl-D end it.

    jobcontrol.py MESHWAIT WHERE MODE [MESHWAIT-OPTION...] -- APP [ARGS...]

WHERE says who owns the terminal and where meshwait runs:
  shell         an interactive bash runs `meshwait ... -- APP` as a job; meshwait is not PID 1;
  pid1-outside  an interactive bash runs `unshare --pid --fork --mount-proc meshwait ...` as a
                job: meshwait is PID 1 of its namespace, and the terminal's session and
                foreground group lie outside it (ids read 0 inside);
  pid1-inside   no shell: on a fresh terminal `unshare --pid --fork --mount-proc setsid --ctty
                meshwait ...`, so meshwait is PID 1 and the terminal's session leader inside its
                namespace, as under `docker run -it`;
  setsid        an interactive bash runs `setsid -w meshwait ...`: meshwait leads a session of
                its own, apart from its parent's, with the terminal on stdin but not as its
                controlling terminal;
  init-inside   the same as pid1-inside with tini as PID 1 in front of meshwait (`docker run -it --init`):
                meshwait leads the terminal's foreground group, its parent is an init that
                resumes nothing.

MODE says what happens to the job:
  read          started in the foreground; it reads its input;
  ctrl-z        started in the foreground, then Ctrl-Z;
  background    started with `&`; its first read of the terminal stops it (SIGTTIN); then `fg`;
  ctrl-z-bg     (shell only) started in the foreground, then Ctrl-Z, then `bg`: the app reads
                the terminal from the background and stops again; then `fg`. Also prints
                "foreground shell" when the shell still had the terminal after `bg` (else
                "foreground other"), and "stops N", how often bash reported the job stopped;
  self          the app stops itself (as editors do when they suspend);
  orphaned      (shell only) started as `(job &)`, so meshwait's parent exits at once and its
                process group is orphaned: no shell can resume it. Prints "stopped-left N", the
                number of stopped processes left in the terminal's session 1.5 s later,
                "hangups N", how often the app said it was hung up, and "warnings N";
  script        (shell only) a script runs meshwait, then reads a line of the terminal itself:
                `sh -c 'meshwait ...; read line; echo "script read $line"'`; Ctrl-Z while the
                app reads, then `fg`. Also prints "script-read yes" when the script got its line;
  background-exit  (shell only) started with `&`; the app does not read the terminal and ends
                on its own. Also prints "foreground shell" when the terminal's foreground is
                bash's group once the job is done (else "foreground other");
  parked-term   (pid1-outside only) started with `&`; the app reads and stops. Meanwhile
                meshwait is stopped and continued from outside (SIGSTOP, SIGCONT), then sent
                SIGTERM; no `fg`. Also prints "errors N", how often meshwait logged an error;
  give-up       (pid1-outside only) started with `&`; the app reads and stops; meshwait is sent
                SIGCONT, which it forwards, and the app (--give-up-on-cont) stops reading the
                terminal; then `fg`.

Prints "stopped yes" when bash reported the job stopped (else "stopped no"), "exit N" with the
job's exit status, "output ..." with every terminal line that starts with "app:", and "warnings
N", how often meshwait warned that the app stopped for a terminal it could not give it. The app
reads the terminal after any stop, so it only gets its input (and the EOF that ends it) if the
terminal was handed to the app's process group.
"""
import os
import pty
import re
import select
import signal
import shlex
import sys
import time

meshwait, where, mode = sys.argv[1:4]
rest = sys.argv[4:]
split = rest.index("--")
options, app = rest[:split], rest[split + 1:]
command = [meshwait, "--mesh", "none", *options, "--", *app]
namespace = ["unshare", "--pid", "--fork", "--mount-proc"]
WARNING = rb"the app stopped to use the terminal"
ERROR = rb"ERROR"
HANGUP = rb"countcont hung up"
NEVER = rb"(?!)"  # a pattern that matches nothing: read_until then just reads for a while

if where in ("pid1-inside", "init-inside"):
    if where == "init-inside":
        command = ["tini", "--", *command]
    # The terminal must be nobody's yet: setsid --ctty makes it PID 1's.
    fd, tty = os.openpty()
    pid = os.fork()
    if pid == 0:
        os.close(fd)
        for n in range(3):
            os.dup2(tty, n)
        os.execvp(namespace[0], [*namespace, "setsid", "--ctty", *command])
    os.close(tty)
else:
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


def session_processes():
    """Every process (but bash) in bash's session on the terminal."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                if os.getsid(int(entry)) == pid:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def finish_input():
    """Types a line and Ctrl-D once the app is reading again after any stop."""
    run("ping")
    read_until(rb"ping")  # the terminal's echo
    os.write(fd, b"\x04")  # Ctrl-D: end of input


def report(stopped, status, *extra):
    print(f"stopped {'yes' if stopped else 'no'}", flush=True)
    print(status, flush=True)
    lines = re.findall(rb"^app:[^\r\n]*", transcript, re.M)
    print("output", " | ".join(line.decode() for line in lines), flush=True)
    counts()
    for line in extra:
        print(line, flush=True)


def counts():
    print("warnings", len(re.findall(WARNING, transcript)), flush=True)
    print("errors", len(re.findall(ERROR, transcript)), flush=True)
    print("hangups", len(re.findall(HANGUP, transcript)), flush=True)


def meshwait_pid():
    """meshwait's pid as seen from here: the child of `unshare --fork` (PID 1 of its namespace).
    Found by its parent rather than its name, which is the emulator's when a test runs another
    architecture's binary through qemu-user."""
    def read(process, name):
        with open(f"/proc/{process}/{name}") as f:
            return f.read()

    for process in session_processes():
        try:
            parent = read(process, "stat").rsplit(")", 1)[1].split()[1]
            if read(parent, "comm").strip() == "unshare":
                return process
        except OSError:
            pass
    raise SystemExit("meshwait not found in the terminal's session")


def shell_status(ask="echo status=$?", prompt_timeout=5.0):
    """Once bash is back at its prompt, the status `ask` prints as `status=N`: "exit N", or
    "no-status" with the end of what was printed instead."""
    read_until(rb"PROMPT> ", timeout=prompt_timeout)
    run(ask)
    status, seen = read_until(rb"status=(\d+)")
    return f"exit {status.group(1).decode()}" if status else f"no-status {seen[-200:]!r}"


def background_status():
    """The last background job's status (bash keeps it for `wait $!` after reporting the job)."""
    return shell_status("wait $!; echo status=$?", prompt_timeout=1)


def inside():
    """pid1-inside: meshwait is the terminal's session leader; there is no shell to stop."""
    if mode != "self":
        read_until(rb"countcont ready")
    if mode == "ctrl-z":
        os.write(fd, b"\x1a")
    if mode in ("ctrl-z", "self"):
        read_until(rb"countcont continued")
    finish_input()
    read_until(rb"app: conts=\d+")
    deadline = time.time() + 5
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            read_until(NEVER, timeout=0.2)  # whatever meshwait wrote last
            return report(False, f"exit {os.waitstatus_to_exitcode(status)}")
        read_until(NEVER, timeout=0.05)
    report(False, "no-status")


def with_shell():
    run("PS1='P''ROMPT> '")  # quoted so the echoed command does not match the prompt
    read_until(rb"PROMPT> ")
    prefix = {"pid1-outside": namespace, "setsid": ["setsid", "-w"]}.get(where, [])
    job = shlex.join(prefix + command)
    if mode == "orphaned":
        run(f"({job} </dev/tty &)")  # a background job in a subshell would get /dev/null
        time.sleep(1.5)
        left = 0
        for process in session_processes():
            try:
                with open(f"/proc/{process}/stat") as f:
                    left += f.read().rsplit(")", 1)[1].split()[0] == "T"
            except OSError:
                pass
        print(f"stopped-left {left}", flush=True)
        read_until(NEVER, timeout=0.2)  # whatever was written meanwhile
        counts()
        return
    if mode == "script":
        job = shlex.join(["sh", "-c", job + '; read line; echo "script read $line"'])
    stopped = False
    if mode == "background-exit":
        run(job + " &")
        read_until(rb"app: conts=")
        time.sleep(0.3)  # meshwait ends with its app
        run("")  # bash reports the job done before the next prompt
        read_until(rb"Done", timeout=2)
        foreground = "shell" if os.tcgetpgrp(fd) == pid else "other"
        return report(False, background_status(), f"foreground {foreground}")
    if mode in ("parked-term", "give-up"):
        run(job + " &")
        read_until(rb"countcont ready")
        time.sleep(0.5)  # the app reads, and stops; meshwait leaves it stopped
        meshwait = meshwait_pid()
        if mode == "give-up":
            os.kill(meshwait, signal.SIGCONT)
            read_until(rb"countcont continued")
            time.sleep(0.2)
            read_until(rb"PROMPT> ", timeout=0.5)
            run("fg")
            read_until(rb"app: conts=", timeout=4)
            return report(False, shell_status())
        os.kill(meshwait, signal.SIGSTOP)
        time.sleep(0.2)
        os.kill(meshwait, signal.SIGCONT)
        time.sleep(0.5)  # the forwarded SIGCONT resumes the app, which stops again
        os.kill(meshwait, signal.SIGTERM)
        time.sleep(0.5)
        return report(False, background_status())
    extra = []
    if mode == "ctrl-z-bg":
        run(job)
        read_until(rb"countcont ready")
        os.write(fd, b"\x1a")
        stops = read_until(rb"Stopped")[0] is not None
        read_until(rb"PROMPT> ")
        run("bg")
        time.sleep(0.5)  # the app reads from the background, and stops
        foreground = "shell" if os.tcgetpgrp(fd) == pid else "other"
        run("")  # bash reports job state changes before the next prompt
        stops += read_until(rb"Stopped", timeout=1.5)[0] is not None
        read_until(rb"PROMPT> ", timeout=0.5)
        run("fg")
        read_until(rb"countcont continued")
        stopped = stops > 0
        extra += [f"foreground {foreground}", f"stops {stops}"]
    elif mode == "background":
        run(job + " &")
        read_until(rb"countcont ready")
        time.sleep(0.3)  # the app reads, and stops
        run("")  # bash reports job state changes before the next prompt
        # Not stopped (meshwait as PID 1 cannot stop with the app): meanwhile the app must stay
        # stopped, not be continued into the same stop again and again.
        stopped = read_until(rb"Stopped", timeout=1.5)[0] is not None
        read_until(rb"PROMPT> ", timeout=0.5)
        run("fg")
        read_until(rb"countcont continued")
    else:
        run(job)
        if mode != "self":
            read_until(rb"countcont ready")
        if mode in ("ctrl-z", "script"):
            os.write(fd, b"\x1a")
        if mode in ("ctrl-z", "script", "self"):
            match, _ = read_until(rb"Stopped|countcont continued")
            stopped = match is not None and match.group(0) == b"Stopped"
            if stopped:
                read_until(rb"PROMPT> ")
                run("fg")
                read_until(rb"countcont continued")
    finish_input()
    if mode == "script":
        read_until(rb"app: conts=")
        run("pong")
        got = read_until(rb"script read pong", timeout=2)[0] is not None
        extra.append(f"script-read {'yes' if got else 'no'}")
    report(stopped, shell_status(), *extra)


try:
    inside() if where in ("pid1-inside", "init-inside") else with_shell()
finally:
    if os.environ.get("JOBCONTROL_TRANSCRIPT"):  # for debugging a session by hand
        sys.stderr.write(transcript.decode(errors="replace"))
    # End everything started on the terminal, so a failed run leaves no stopped job behind.
    if where in ("pid1-inside", "init-inside"):
        # SIGKILL to the namespace's PID 1 ends the whole namespace.
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                leftovers = [int(p) for p in f.read().split()]
        except OSError:
            leftovers = []
    else:
        leftovers = session_processes()
    for process in leftovers:
        try:
            os.kill(process, 9)
        except OSError:
            pass
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
