#!/usr/bin/env python3
"""Core benchmark: meshwait next to tini, tini-static, dumb-init, catatonit and poll loops.

    python3 bench/core.py [--meshwait PATH] [--runs N] [--quick] [--json FILE]

Everything is measured side by side in one run, on this machine, against 127.0.0.1 only:

  1. binary size            bytes on disk (and whether the ELF is static)
  2. peak RSS               VmHWM of the wrapper while it supervises `sleep`
  3. start-up overhead      `WRAPPER -- true` against plain `true`, spawn to reap
  4. readiness -> exec      flip of a local readiness endpoint (503 -> 200) to the app's first
                            instruction (`date +%s%N`), against 500 ms and 1 s poll loops
  5. signal forwarding      os.kill(wrapper, SIGUSR1) to the app's handler running
  5b. real-time burst       1000 x SIGRTMIN+1 sent at once: how many reach the app (and through
                            signal-hook's iterator and a sigwaitinfo loop, bench/signal_hook)
  7. idle wakeups           syscalls/s under strace, and context switches/s without a tracer
  (6 and 8, the socket scan and the drain, are bench/drain.py's.)

--quick does one iteration of each (CI smoke). Python 3 standard library only.
"""

import argparse
import collections
import ctypes
import os
import platform
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from benchlib import (DEFAULT_MESHWAIT, PYTHON, REPO, TABLES, Children, Unmeasurable, Watchdog, arm_watchdog,
                      child_env, descendants, finish, machine, median, mono, pct, print_table, signal_quietly, tail,
                      verdict, version_of, wait_until)

PROGRAMS = Path(__file__).resolve().parent / "programs"

# The targets the summary checks, as stated in the project's goals.
TARGET_SIZE_BYTES = 1_200_000
TARGET_RSS_KIB = 1536  # 1.5 MiB
TARGET_READY_P50_MS = 20.0
TARGET_READY_P99_MS = 60.0
TARGET_PROBES_PER_S = 20.0
TARGET_SIGNAL_RATIO = 1.2

WRAPPER_NAMES = ("meshwait", "tini", "tini-static", "dumb-init", "catatonit")
MESHWAIT_INTERVAL = "50ms"  # the default, passed explicitly so the figure says what it measured
LISTENER_ROW = f"meshwait --interval {MESHWAIT_INTERVAL}, proxy listener at the flip"


class LineReader:
    """Reads lines from a pipe with a time bound on every read (plain readline could hang)."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buf = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unmeasurable(f"no output within {timeout:.1f} s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 4096)
            if not chunk:
                line, self.buf = self.buf, b""
                return line.decode(errors="replace") if line else None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")


# --------------------------------------------------------------------------------------------
# Small helpers: ratios, /proc, ELF.
# --------------------------------------------------------------------------------------------

def ratio(mine, theirs):
    if mine is None or not theirs:
        return "n/a"
    return f"{mine / theirs:.2f}x"


def proc_status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of pid; None if it is gone."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            status = proc_status(f"{pid}/task/{tid}")
            total += int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
    except (OSError, KeyError, ValueError):
        return None
    return total


def is_traced(pid):
    try:
        return proc_status(pid).get("TracerPid", "0") != "0"
    except OSError:
        return False


def elf_is_static(path):
    """True when the ELF has no PT_INTERP (no dynamic loader); static-pie counts as static."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return None  # not a 64-bit ELF; do not guess
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


# --------------------------------------------------------------------------------------------
# The contestants.
# --------------------------------------------------------------------------------------------

def wrappers(meshwait):
    """name -> argv prefix for every init wrapper that is available.

    tini gets -s (child subreaper) because meshwait and catatonit register as subreapers too
    and none of them is PID 1 here; it changes no number measured, only silences tini's warning.
    """
    found = collections.OrderedDict()
    if meshwait and os.access(meshwait, os.X_OK):
        found["meshwait"] = [str(meshwait), "--mesh", "none", "--"]
    for name, argv in (("tini", ["tini", "-s", "--"]),
                       ("tini-static", ["tini-static", "-s", "--"]),
                       ("dumb-init", ["dumb-init"]),
                       ("catatonit", ["catatonit", "--"])):
        path = shutil.which(argv[0])
        if path:
            found[name] = [path] + argv[1:]
    return found


def start_supervising_sleep(kids, argvs, seconds):
    """Starts every wrapper with `sleep seconds` and waits until each really has its child."""
    procs = {name: kids.spawn(argv + ["sleep", str(seconds)]) for name, argv in argvs.items()}
    failed = {}
    for name, proc in procs.items():
        has_child = lambda p=proc: p.poll() is not None or bool(descendants(p.pid))
        if not wait_until(has_child, 5) or proc.poll() is not None:
            failed[name] = f"exited early ({proc.poll()}): {tail(proc.errpath)}"
    return procs, failed


# --------------------------------------------------------------------------------------------
# Figure 1: size.
# --------------------------------------------------------------------------------------------

def figure_size(meshwait, results):
    candidates = [("meshwait", meshwait), ("tini-static", shutil.which("tini-static")),
                  ("catatonit", shutil.which("catatonit")),
                  ("tini (dynamic)", shutil.which("tini")), ("dumb-init (dynamic)", shutil.which("dumb-init"))]
    sizes = {}
    rows = []
    for name, path in candidates:
        if not path or not os.path.exists(path):
            rows.append([name, "", "", "", "", "not found"])
            continue
        size = os.path.getsize(path)
        sizes[name] = size
        static = elf_is_static(path)
        rows.append([name, f"{size:,}", f"{size / 1e6:.3f}",
                     {True: "yes", False: "no", None: "?"}[static], None, str(path)])
        if name == "meshwait":
            results["size"] = (size, static)
    for row in rows:
        if row[4] is None:
            row[4] = ratio(sizes.get("meshwait"), sizes[row[0]])
    print_table("Figure 1. Binary size (bytes on disk; one value, it does not vary between runs)",
                ["binary", "bytes", "MB", "static", "meshwait / this", "path"], rows, left=(0, 5),
                notes=["tini and dumb-init are dynamically linked: their size excludes libc."])


# --------------------------------------------------------------------------------------------
# Figure 2: peak RSS.
# --------------------------------------------------------------------------------------------

def figure_rss(kids, argvs, repeats, results):
    """All wrappers run at once (RSS does not depend on neighbours), repeated `repeats` times."""
    samples = collections.defaultdict(list)
    errors = {}
    for _ in range(repeats):
        procs, failed = start_supervising_sleep(kids, argvs, 5)
        errors.update(failed)
        time.sleep(0.5)  # let every wrapper finish start-up before reading its high-water mark
        for name, proc in procs.items():
            if name in failed or proc.poll() is not None:
                continue
            try:
                samples[name].append(int(proc_status(proc.pid)["VmHWM"].split()[0]))
            except (OSError, KeyError, ValueError) as e:
                errors[name] = f"cannot read /proc/{proc.pid}/status: {e}"
        kids.stop(list(procs.values()))
    base = median(samples["meshwait"]) if samples.get("meshwait") else None
    rows = []
    for name in WRAPPER_NAMES:
        s = samples.get(name)
        if not s:
            why = errors.get(name, "no sample") if name in argvs else "not installed"
            rows.append([name, "not measured: " + why, "", "", "", ""])
            continue
        rows.append([name, len(s), min(s), median(s), max(s), ratio(base, median(s))])
    if samples.get("meshwait"):
        results["rss_kib"] = max(samples["meshwait"])
    print_table("Figure 2. Peak RSS (VmHWM of the wrapper, KiB, read 0.5 s after start while it supervises sleep)",
                ["wrapper", "runs", "min", "median", "max", "meshwait / this (median)"], rows)


# --------------------------------------------------------------------------------------------
# Figure 7: idle wakeups.
# --------------------------------------------------------------------------------------------

def count_strace_syscalls(path, begin, end):
    """Syscalls that returned within [begin, end] in an `strace -f -ttt -T` log.

    A returned syscall's line carries its entry time and, with -T, its duration; their sum is
    when it returned (a "<... resumed>" line is already stamped at the return). Counting returns
    rather than entries means a wait that started before the window and woke inside it counts
    once, and one still blocked when we detach ("<detached ...>") does not. "<unfinished ...>"
    lines only open a syscall; "+++"/"---" lines are events, not syscalls. The window opens after
    the attach has settled, so the restart the attach itself forces (tini's rt_sigtimedwait
    returns early) is not counted against anyone.
    """
    count = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        try:
            stamp = float(parts[1])
        except ValueError:
            continue
        rest = parts[2]
        if rest.startswith(("+++", "---")) or "<unfinished ...>" in rest or "<detached ...>" in rest:
            continue
        if not rest.startswith("<..."):
            head, _, duration = rest.rstrip().rpartition("<")
            try:
                stamp += float(duration.rstrip(">"))
            except ValueError:
                pass  # no -T field (e.g. "= ?"): keep the entry time
        if begin <= stamp <= end:
            count += 1
    return count


def figure_idle(kids, argvs, window, repeats, scratch, results):
    """Two windows per repeat, all wrappers at once:

    - context switches from /proc with no tracer attached (ptrace itself causes switches), i.e.
      how often the kernel woke the wrapper;
    - syscalls counted by strace, i.e. what each wakeup does.
    """
    strace = shutil.which("strace")
    switches = collections.defaultdict(list)
    syscalls = collections.defaultdict(list)
    errors = {}
    strace_error = None if strace else "strace is not installed"
    for rep in range(repeats):
        procs, failed = start_supervising_sleep(kids, argvs, int(2 * window + 30))
        errors.update(failed)
        live = {n: p for n, p in procs.items() if n not in failed}
        try:
            time.sleep(0.5)  # past start-up: only idle behaviour counts
            before = {n: context_switches(p.pid) for n, p in live.items()}
            t0 = time.monotonic()
            time.sleep(window)
            after = {n: context_switches(p.pid) for n, p in live.items()}
            elapsed = time.monotonic() - t0
            for n in live:
                if before[n] is None or after[n] is None:
                    errors[n] = f"exited during the window: {tail(live[n].errpath)}"
                else:
                    switches[n].append((after[n] - before[n]) / elapsed)

            if strace_error:
                continue
            tracers = {}
            for n, p in live.items():
                log = scratch / f"strace.{n}.{rep}"
                tracers[n] = (kids.spawn([strace, "-f", "-qq", "-ttt", "-T", "-o", str(log), "-p", str(p.pid)]), log)
            for n, p in live.items():
                if not wait_until(lambda pid=p.pid: is_traced(pid), 5):
                    errors[n] = f"strace could not attach: {tail(tracers[n][0].errpath)}"
            time.sleep(0.3)  # let the attach-induced restarts pass before the window opens
            begin = time.time()
            time.sleep(window)
            end = time.time()
            for tracer, _ in tracers.values():
                signal_quietly(tracer, signal.SIGINT)  # strace detaches cleanly on SIGINT
            for n, (tracer, log) in tracers.items():
                try:
                    tracer.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    kids.stop([tracer])
                if n in errors:
                    continue
                if not log.exists():
                    errors[n] = f"strace wrote no log: {tail(tracer.errpath)}"
                    continue
                syscalls[n].append(count_strace_syscalls(log, begin, end) / (end - begin))
        finally:
            kids.stop(list(procs.values()))

    rows = []
    for name in WRAPPER_NAMES:
        sw, sc = switches.get(name), syscalls.get(name)
        if not sw and not sc:
            why = errors.get(name, "no sample") if name in argvs else "not installed"
            rows.append([name, "not measured: " + why, "", "", "", "", ""])
            continue
        fmt = lambda xs: [f"{min(xs):.2f}", f"{median(xs):.2f}", f"{max(xs):.2f}"] if xs else ["n/a"] * 3
        sc_cells = fmt(sc) if sc else [f"n/a ({errors.get(name) or strace_error})", "", ""]
        rows.append([name, *fmt(sw), *sc_cells])
    if switches.get("meshwait"):
        results["idle"] = (max(switches["meshwait"]),
                           max(syscalls["meshwait"]) if syscalls.get("meshwait") else None)
    print_table(f"Figure 7. Idle wakeups while supervising sleep ({repeats} x {window:g} s windows per column)",
                ["wrapper", "ctx sw/s min", "median", "max", "syscalls/s min", "median", "max"], rows,
                notes=["ctx sw/s: context switches from /proc with no tracer attached (each one is a wakeup).",
                       "syscalls/s: syscalls returning under `strace -f -p`, counted after attaching settled."])


# --------------------------------------------------------------------------------------------
# Figure 3: start-up overhead.
# --------------------------------------------------------------------------------------------

def spawn_and_reap_ms(argv, env):
    """Wall time from posix_spawn to the reaped exit, in ms; the exit status must be 0. Output
    goes to /dev/null, so a wrapper that logs (meshwait does, by default) pays for the write and
    not for a terminal."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    finally:
        os.close(devnull)
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter() - t0) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise Unmeasurable(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
    return elapsed


def figure_startup(argvs, runs, results):
    """`WRAPPER -- true` against `true` alone, interleaved in a shuffled order each round, so
    that what a wrapper adds to every container start is the difference of medians."""
    true = shutil.which("true")
    contestants = collections.OrderedDict([("true (no wrapper)", [true])])
    for name, argv in argvs.items():
        # As a container's entrypoint would run them: tini without -s (the other figures add it
        # because tini is not PID 1 there; here its warning goes to /dev/null like all output).
        argv = [a for a in argv if a != "-s"] if name.startswith("tini") else argv
        contestants[name] = argv + [true]
    env = child_env()
    samples = collections.defaultdict(list)
    errors = {}
    shuffle = random.Random(3)
    for rnd in range(runs + 10):  # 10 warm-up rounds: page cache, dynamic loader caches
        order = [n for n in contestants if n not in errors]
        shuffle.shuffle(order)
        for name in order:
            try:
                ms = spawn_and_reap_ms(contestants[name], env)
            except (Unmeasurable, OSError) as e:
                errors[name] = str(e)
                continue
            if rnd >= 10:
                samples[name].append(ms)
    base = median(samples["true (no wrapper)"]) if samples.get("true (no wrapper)") else None
    tini = median(samples["tini"]) if samples.get("tini") else None
    rows = []
    for name in contestants:
        s = samples.get(name)
        if not s:
            rows.append([name, "not measured: " + errors.get(name, "no sample"), "", "", "", "", "", ""])
            continue
        added = f"{median(s) - base:+.3f}" if base is not None and name != "true (no wrapper)" else ""
        rows.append([name, len(s), f"{min(s):.3f}", f"{median(s):.3f}", f"{pct(s, 90):.3f}", f"{max(s):.3f}",
                     added, ratio(median(s), tini) if name != "true (no wrapper)" else ""])
    if samples.get("meshwait"):
        results["startup"] = {name: {"min_ms": min(s), "median_ms": median(s), "max_ms": max(s)}
                              for name, s in samples.items()}
    print_table(f"Figure 3. Start-up overhead: `WRAPPER -- true`, spawn to reap (ms, {runs} rounds)",
                ["command", "runs", "min", "median", "p90", "max", "added to true (median)", "this / tini"],
                rows, notes=["meshwait runs as `meshwait --mesh none -- true`: no readiness gate, a full init; "
                             "tini as `tini -- true`, dumb-init as `dumb-init true`; all output to /dev/null.",
                             "Each round runs every command once, in a shuffled order (10 warm-up rounds "
                             "not counted)."])


# --------------------------------------------------------------------------------------------
# Figure 4: readiness -> exec latency.
# --------------------------------------------------------------------------------------------

class ReadinessServer:
    """A local readiness endpoint that answers 503 until a flip instant, then 200.

    The flip is a timestamp compared in the handler, not a timer that fires, so "when did it
    become ready" is exact and has no scheduling jitter of its own. Each run gets its own path
    (/ready/<run>), so a straggling request from an earlier run can never be counted.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.run = None
        self.flip_ns = 0
        self.not_ready = []  # arrival times (ns) of the 503 answers of the current run
        self.ready = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 2  # a stuck client cannot hold a server thread for long

            def do_GET(self):
                now = time.time_ns()
                run = self.path.rsplit("/", 1)[-1]
                with outer.lock:
                    if run != outer.run:
                        code = 404
                    elif now >= outer.flip_ns:
                        code = 200
                        outer.ready.append(now)
                    else:
                        code = 503
                        outer.not_ready.append(now)
                body = {200: b"ok\n", 503: b"not ready\n", 404: b"stale run\n"}[code]
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

        self.listener = None  # the stand-in for the proxy's capture listener, open after a flip

    def arm(self, run, flip_ns, listen_port=None):
        """Sets up a run. With `listen_port`, a listener also opens there at the flip, as Envoy's
        capture listeners open in the step that makes it ready."""
        with self.lock:
            self.run, self.flip_ns = str(run), flip_ns
            self.not_ready, self.ready = [], []
            if self.listener:
                self.listener.close()
                self.listener = None
        if listen_port:
            def open_at_flip():
                time.sleep(max(0.0, (flip_ns - time.time_ns()) / 1e9))
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", listen_port))
                sock.listen()
                with self.lock:
                    self.listener = sock
            threading.Thread(target=open_at_flip, daemon=True).start()

    def observed(self):
        with self.lock:
            return list(self.not_ready), list(self.ready)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.listener:
            self.listener.close()


def readiness_run(kids, server, run, argv_for_url, listen_port=None):
    """One run: start the gate, flip at a random instant 300-800 ms later, read the app's clock."""
    start_ns = time.time_ns()
    flip_ns = start_ns + random.randint(300_000, 800_000) * 1000
    server.arm(run, flip_ns, listen_port)
    url = f"http://127.0.0.1:{server.port}/ready/{run}"
    proc = kids.spawn(argv_for_url(url), stdout=subprocess.PIPE)
    try:
        timeout = (flip_ns - time.time_ns()) / 1e9 + 5
        line = LineReader(proc.stdout).readline(timeout)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise Unmeasurable("did not exit after the app ran")
        if line is None or code != 0:
            raise Unmeasurable(f"exit {code}, output {line!r}: {tail(proc.errpath)}")
        try:
            app_ns = int(line.strip())
        except ValueError:
            raise Unmeasurable(f"unexpected output {line!r}")
    finally:
        kids.stop([proc])
    not_ready, ready = server.observed()
    if app_ns < flip_ns:
        raise Unmeasurable(f"the app ran {(flip_ns - app_ns) / 1e6:.1f} ms BEFORE the endpoint was ready")
    return {
        "latency_ms": (app_ns - flip_ns) / 1e6,
        "probes": len(not_ready),
        "phase_s": (flip_ns - start_ns) / 1e9,
        # Gaps between consecutive 503 probes: the steady rate without the first-probe fencepost.
        "gaps_s": [(b - a) / 1e9 for a, b in zip(not_ready, not_ready[1:])],
        "ready_answers": len(ready),
        # From the server taking the first probe it answers 200 to, to the app running: the gate's own reaction time,
        # without the wait for the next probe.
        "react_ms": (app_ns - ready[0]) / 1e6 if ready else None,
    }


def figure_readiness(kids, meshwait, runs, anchor_runs, results):
    poll = PROGRAMS / "poll_loop.py"
    methods = collections.OrderedDict()
    have_meshwait = bool(meshwait) and os.access(meshwait, os.X_OK)
    # A free port stands for the proxy's capture listener (15001 in Istio).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen_port = s.getsockname()[1]
    methods[f"meshwait --interval {MESHWAIT_INTERVAL} (probes only)"] = (
        runs if have_meshwait else 0,
        lambda url: [str(meshwait), "--ready-url", url, "--interval", MESHWAIT_INTERVAL,
                     "--watch-listener", "0", "--", "date", "+%s%N"])
    methods[LISTENER_ROW] = (
        runs if have_meshwait else 0,
        lambda url: [str(meshwait), "--ready-url", url, "--interval", MESHWAIT_INTERVAL,
                     "--watch-listener", str(listen_port), "--", "date", "+%s%N"])
    methods["poll 500 ms (pilot-agent wait)"] = (
        anchor_runs, lambda url: [PYTHON, str(poll), url, "0.5"])
    methods["poll 1 s (shell loop)"] = (
        anchor_runs, lambda url: [PYTHON, str(poll), url, "1.0"])

    # Round-robin, so slow drift (thermal, a noisy neighbour) hits every method alike.
    schedule = []
    longest = max(n for n, _ in methods.values())
    for i in range(longest):
        for name, (n, _) in methods.items():
            if ((i + 1) * n) // longest > (i * n) // longest:  # n runs spread evenly over the slots
                schedule.append(name)
    server = ReadinessServer()
    outcomes = collections.defaultdict(list)
    failures = collections.defaultdict(list)
    try:
        for run, name in enumerate(schedule):
            try:
                outcomes[name].append(readiness_run(kids, server, run, methods[name][1],
                                                    listen_port if name == LISTENER_ROW else None))
            except Unmeasurable as e:
                failures[name].append(str(e))
    finally:
        server.close()

    rows, base = [], None
    for name in methods:
        got = outcomes.get(name, [])
        if not got:
            why = failures[name][0] if failures.get(name) else "not installed"
            rows.append([name, f"0/{len(failures[name])}", f"not measured: {why}", "", "", "", "", "", "", ""])
            continue
        lat = [o["latency_ms"] for o in got]
        raw_rate = sum(o["probes"] for o in got) / sum(o["phase_s"] for o in got)
        gaps = [g for o in got for g in o["gaps_s"]]
        steady = len(gaps) / sum(gaps) if gaps else None
        react = [o["react_ms"] for o in got if o["react_ms"] is not None]
        p50 = median(lat)
        if base is None and name.startswith("meshwait"):
            base = p50
            results["ready"] = (p50, pct(lat, 99), raw_rate, steady, len(lat))
        if name == LISTENER_ROW:
            results["ready_listener"] = (p50, pct(lat, 99), raw_rate, steady, len(lat))
        rows.append([name, f"{len(lat)}/{len(lat) + len(failures[name])}", f"{min(lat):.1f}", f"{p50:.1f}",
                     f"{pct(lat, 99):.1f}", f"{max(lat):.1f}", f"{raw_rate:.2f}",
                     f"{steady:.2f}" if steady else "n/a",
                     f"{median(react):.1f} / {max(react):.1f}" if react else "n/a", ratio(base, p50)])
    notes = [
        "latency = app's `date +%s%N` - flip instant; flip uniform in 300-800 ms after the gate starts.",
        "probes/s (phase) = 503 answers / (flip - start), as specified; it includes the probe at t=0,",
        "  so a 50 ms poller shows ~20 + 1/phase. probes/s (steady) = 1 / mean gap between 503 probes.",
        "200->exec: from the server taking the probe it answers 200 to, to the app's clock (the gate's own reaction).",
        "p99 is nearest-rank: with fewer than 100 runs it is the maximum.",
        "fixed-period polling: the wait from flip to the next probe is ~uniform in [0, period),",
        "  so p50 cannot be below about period/2 (25 ms at 50 ms) plus probe + fork/exec time.",
        "proxy listener at the flip: a listener opens on a port of the run's own when the endpoint turns",
        "  ready, as Envoy's capture listeners (15001/15006) open in the step that makes it ready;",
        "  meshwait --watch-listener PORT looks at the listening sockets every 5 ms and probes at once.",
    ]
    for name, errs in failures.items():
        if errs:
            notes.append(f"{name}: {len(errs)} failed run(s), first: {errs[0]}")
    extra = [o for name in methods for o in outcomes.get(name, []) if o["ready_answers"] != 1]
    if extra:
        notes.append(f"{len(extra)} run(s) saw more than one 200 answer (a probe in flight at the end).")
    print_table("Figure 4. Readiness -> app exec latency (ms), same local server and method for every row",
                ["method", "ok/runs", "min", "p50", "p99", "max", "probes/s (phase)", "probes/s (steady)",
                 "200->exec p50 / max", "meshwait / this (p50)"], rows, notes)


# --------------------------------------------------------------------------------------------
# Figure 5: signal forwarding latency.
# --------------------------------------------------------------------------------------------

def figure_signals(kids, argvs, count, warmup, results):
    app = PROGRAMS / "signal_app.py"
    contestants = ("meshwait", "tini", "dumb-init")
    chosen = [n for n in contestants if n in argvs]
    running, readers, errors = {}, {}, {}
    samples = collections.defaultdict(list)
    try:
        for name in chosen:
            running[name] = kids.spawn(argvs[name] + [PYTHON, str(app)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
            readers[name] = LineReader(running[name].stdout)
        for name in chosen:
            try:
                line = readers[name].readline(10)
                if line != "ready":
                    raise Unmeasurable(f"app said {line!r}: {tail(running[name].errpath)}")
            except Unmeasurable as e:
                errors[name] = str(e)
        live = [n for n in chosen if n not in errors]
        # Round-robin over the wrappers: noise (other tasks, frequency changes) hits all alike.
        # The first `warmup` rounds (page faults, cold caches) are not counted.
        for i in range(warmup + count):
            for name in list(live):
                try:
                    sent = time.time_ns()
                    os.kill(running[name].pid, signal.SIGUSR1)
                    line = readers[name].readline(2)
                    if line is None:
                        raise Unmeasurable(f"app exited: {tail(running[name].errpath)}")
                    if i >= warmup:
                        samples[name].append((int(line) - sent) / 1000)
                except (Unmeasurable, ValueError, ProcessLookupError) as e:
                    errors[name] = str(e)
                    live.remove(name)
                time.sleep(0.002)  # let everything go idle: each signal meets a sleeping chain
        for name in chosen:  # closing stdin ends the app; the wrapper then exits with its status
            try:
                running[name].stdin.close()
            except OSError:
                pass
    finally:
        kids.stop(list(running.values()))

    tini_p50 = median(samples["tini"]) if samples.get("tini") else None
    rows = []
    for name in contestants:
        s = samples.get(name)
        if not s:
            rows.append([name, "not measured: " + errors.get(name, "not installed"), "", "", "", "", ""])
            continue
        rows.append([name, len(s), f"{min(s):.1f}", f"{median(s):.1f}", f"{pct(s, 99):.1f}",
                     f"{max(s):.1f}", ratio(median(s), tini_p50)])
    if samples.get("meshwait"):
        results["signal"] = (median(samples["meshwait"]), tini_p50)
    print_table("Figure 5. Signal forwarding latency (us): os.kill(wrapper, SIGUSR1) -> app's handler clock",
                ["wrapper", "signals", "min", "p50", "p99", "max", "this / tini (p50)"], rows,
                notes=["includes the app's Python handler start-up, identical for every wrapper."])


# --------------------------------------------------------------------------------------------
# Figure 5b: a burst of real-time signals.
# --------------------------------------------------------------------------------------------

FORWARDERS = REPO / "bench" / "signal_hook"


def build_forwarders():
    """The two minimal inits of bench/signal_hook (signal-hook's iterator, a sigwaitinfo loop):
    path, or raises Unmeasurable. They need cargo and the crates.io index."""
    target = REPO / "target" / "forwarders"
    try:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--manifest-path",
                        str(FORWARDERS / "Cargo.toml")], check=True, timeout=300,
                       env=dict(os.environ, CARGO_TARGET_DIR=str(target)),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        raise Unmeasurable(f"building {FORWARDERS.name}: {e} {detail.decode(errors='replace')[-300:]}")
    return target / "release" / "forwarders"


def rt_burst_once(kids, argv, burst, quiet, scratch, ends_on_usr1):
    """Starts `argv` with the counting app, sends `burst` SIGRTMIN+1 to the init at once, and
    returns how many the app received."""
    out = scratch / f"rt-{time.monotonic_ns()}"
    proc = kids.spawn(argv + [PYTHON, str(PROGRAMS / "rt_count.py"), str(out), str(quiet)],
                      stdout=subprocess.PIPE)
    line = LineReader(proc.stdout).readline(10)
    if line != "ready":
        raise Unmeasurable(f"app said {line!r}: {tail(proc.errpath)}")
    rt = signal.SIGRTMIN + 1
    for _ in range(burst):
        os.kill(proc.pid, rt)
    if ends_on_usr1:
        # The app ends after its quiet period; the minimal inits end on SIGUSR1.
        time.sleep(quiet + 0.5)
        signal_quietly(proc, signal.SIGUSR1)
    try:
        proc.wait(timeout=quiet + 10)
    except subprocess.TimeoutExpired:
        raise Unmeasurable(f"did not exit: {tail(proc.errpath)}")
    try:
        return int(out.read_text())
    except (OSError, ValueError):
        raise Unmeasurable(f"the app wrote no count: {tail(proc.errpath)}")


def figure_rt_burst(kids, argvs, forwarders, burst, rounds, quiet, scratch, results):
    """`forwarders`: build_forwarders()'s path, or why there is none."""
    contestants = [(name, argv, False) for name, argv in argvs.items()]
    forwarders_error = None
    if isinstance(forwarders, Path):
        contestants += [("signal-hook iterator", [str(forwarders), "hook"], True),
                        ("sigwaitinfo loop", [str(forwarders), "wait"], True)]
    else:
        forwarders_error = forwarders
    rows = []
    for name, argv, usr1 in contestants:
        try:
            got = [rt_burst_once(kids, argv, burst, quiet, scratch, usr1) for _ in range(rounds)]
        except Unmeasurable as e:
            rows.append([name, "not measured: " + str(e)] + [""] * 3)
            continue
        rows.append([name, rounds, min(got), median(got), max(got)])
        results.setdefault("rt_burst", {})[name] = got
    if forwarders_error:
        for name in ("signal-hook iterator", "sigwaitinfo loop"):
            rows.append([name, "not measured: " + forwarders_error] + [""] * 3)
    print_table(f"Figure 5b. A burst of {burst} x SIGRTMIN+1 sent to the init at once: how many reach the app",
                ["init", "rounds", "min", "median", "max"], rows,
                notes=["the kernel queues each instance of a real-time signal; an init must forward each one.",
                       "the last two rows are the minimal inits of bench/signal_hook: signal-hook's iterator "
                       "(a handler records the signal and wakes a reader) and a blocked signal read with "
                       "sigwaitinfo (as meshwait does); they show why meshwait does not use signal-hook."])


# --------------------------------------------------------------------------------------------
# Summary.
# --------------------------------------------------------------------------------------------

def summary(results, quick):
    rows = []
    size = results.get("size")
    rows.append(["static binary <= 1,200,000 bytes",
                 f"{size[0]:,} bytes, static={'yes' if size[1] else 'no'}" if size else "n/a",
                 verdict(size and size[0] <= TARGET_SIZE_BYTES and bool(size[1]))])
    rss = results.get("rss_kib")
    rows.append(["peak RSS <= 1.5 MiB (1536 KiB)", f"{rss} KiB (max of runs)" if rss else "n/a",
                 verdict(None if rss is None else rss <= TARGET_RSS_KIB)])
    ready = results.get("ready")
    if ready:
        p50, p99, raw_rate, steady, n = ready
        rate = steady if steady is not None else raw_rate
        rows.append(["ready->exec p50 <= 20 ms", f"{p50:.1f} ms ({n} runs; probes only)", verdict(p50 <= TARGET_READY_P50_MS)])
        rows.append(["ready->exec p99 <= 60 ms", f"{p99:.1f} ms", verdict(p99 <= TARGET_READY_P99_MS)])
        rows.append(["... at <= 20 probes/s", f"{rate:.2f}/s steady ({raw_rate:.2f}/s incl. first probe)",
                     verdict(rate <= TARGET_PROBES_PER_S + 0.05)])  # 0.05: clock granularity, not load
        listener = results.get("ready_listener")
        if listener:
            lp50, lp99, lraw, lsteady, ln = listener
            lrate = lsteady if lsteady is not None else lraw
            rows.append(["ready->exec p50 <= 20 ms, p99 <= 60 ms", f"{lp50:.1f} / {lp99:.1f} ms ({ln} runs; "
                         f"proxy listener at the flip) at {lrate:.2f}/s steady",
                         verdict(lp50 <= TARGET_READY_P50_MS and lp99 <= TARGET_READY_P99_MS
                                 and lrate <= TARGET_PROBES_PER_S + 0.05)])
    else:
        rows.append(["ready->exec p50/p99 at <= 20 probes/s", "n/a", verdict(None)])
    idle = results.get("idle")
    if idle:
        sw, sc = idle
        shown = f"{sw:.2f} ctx sw/s, " + (f"{sc:.2f} syscalls/s" if sc is not None else "syscalls n/a")
        rows.append(["0 idle wakeups/s", shown + " (max of runs)", verdict(sw == 0 and (sc or 0) == 0)])
    else:
        rows.append(["0 idle wakeups/s", "n/a", verdict(None)])
    sig = results.get("signal")
    if sig and sig[1]:
        rows.append(["signal latency p50 <= 1.2x tini", f"{sig[0]:.1f} us vs tini {sig[1]:.1f} us = {sig[0] / sig[1]:.3f}x",
                     verdict(sig[0] <= TARGET_SIGNAL_RATIO * sig[1])])
    else:
        rows.append(["signal latency p50 <= 1.2x tini", "n/a", verdict(None)])
    notes = ["--quick: one sample per figure; these verdicts are a smoke check, not a measurement."] if quick else []
    print_table(f"Summary ({Path(__file__).name}): meshwait against its targets", ["target", "measured", "verdict"], rows, notes)


# --------------------------------------------------------------------------------------------

def ensure_meshwait(path, is_default):
    """The binary to measure. The default one is (re)built with cargo first: cargo does nothing
    when it is fresh, and a binary older than the source would make every figure describe code
    that no longer exists. An explicit --meshwait is measured as given."""
    if not is_default:
        if os.access(path, os.X_OK):
            return path
        print(f"meshwait not found at {path}; its rows will say 'not measured'.")
        return None
    if shutil.which("cargo"):
        print("cargo build --release --target x86_64-unknown-linux-musl ...", flush=True)
        try:
            subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "x86_64-unknown-linux-musl"],
                           cwd=REPO, timeout=900, check=True, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as e:
            print(f"build failed ({e}); measuring whatever binary is there, if any.")
    elif not os.access(path, os.X_OK):
        print("cargo not found and no binary; meshwait rows will say 'not measured'.")
    return path if os.access(path, os.X_OK) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshwait", default=str(DEFAULT_MESHWAIT), help="meshwait binary (default: musl release)")
    parser.add_argument("--runs", type=int, default=120,
                        help="readiness runs for meshwait (anchors get a quarter); signals per wrapper = 5 x N")
    parser.add_argument("--quick", action="store_true", help="one iteration of each figure (CI smoke, < 60 s)")
    parser.add_argument("--json", metavar="FILE", help="also write the machine, the tables and the results to FILE")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    started = mono()
    budget = 55 if args.quick else 600
    if args.quick:
        runs, anchor_runs, signals, warmup, rss_repeats, idle_repeats, window = 1, 1, 1, 1, 1, 1, 1.0
        startup_runs = 1
        burst, burst_rounds, burst_quiet = 100, 1, 0.5
    else:
        runs, anchor_runs = args.runs, max(1, args.runs // 4)
        signals, warmup, rss_repeats, idle_repeats, window = 5 * args.runs, 5, 5, 3, 3.0
        startup_runs = 200
        burst, burst_rounds, burst_quiet = 1000, 3, 1.5

    # A stop request or the time budget becomes an exception, so the finally below always runs.
    arm_watchdog()

    # Child subreaper: anything a killed wrapper leaves behind is re-parented to us, so cleanup
    # can find and end it. Best effort; without it only a crash could leak a `sleep`.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass

    meshwait = ensure_meshwait(args.meshwait, args.meshwait == str(DEFAULT_MESHWAIT))
    try:
        forwarders = build_forwarders()
    except Unmeasurable as e:
        forwarders = str(e)
    signal.alarm(budget)  # after any build: the budget is for measuring
    results = {}
    scratch = Path(tempfile.mkdtemp(prefix="meshwait-bench-"))
    kids = Children(scratch)
    mode = "quick" if args.quick else f"full, --runs {args.runs}"
    print(f"meshwait core benchmark ({mode}) on {platform.node()}: Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    argvs = wrappers(meshwait)
    for name, argv in argvs.items():
        print(f"  {name:12} {argv[0]}  ({version_of(argv[0])})")
    figures = [
        ("size", lambda: figure_size(meshwait, results)),
        ("peak RSS", lambda: figure_rss(kids, argvs, rss_repeats, results)),
        ("start-up", lambda: figure_startup(argvs, startup_runs, results)),
        ("readiness", lambda: figure_readiness(kids, meshwait, runs, anchor_runs, results)),
        ("signals", lambda: figure_signals(kids, argvs, signals, warmup, results)),
        ("real-time burst", lambda: figure_rt_burst(kids, argvs, forwarders, burst, burst_rounds, burst_quiet,
                                                     scratch, results)),
        ("idle wakeups", lambda: figure_idle(kids, argvs, window, idle_repeats, scratch, results)),
    ]
    failed = []
    try:
        for name, run in figures:
            t0 = time.monotonic()
            try:
                run()
            except (Unmeasurable, OSError, subprocess.SubprocessError) as e:
                print(f"\nFigure '{name}' could not be measured: {type(e).__name__}: {e}")
                failed.append(name)
            finally:
                kids.stop([p for p in kids.procs if p.poll() is None])
            print(f"  ({name}: {time.monotonic() - t0:.1f} s)", flush=True)
        summary(results, args.quick)
    except Watchdog as e:
        print(f"\nbenchmark aborted: {e}; partial results above.")
        return 2
    finally:
        finish(kids, scratch, started, args.json,
               lambda: {"script": "core", "mode": "quick" if args.quick else "full", "machine": machine(),
                        "versions": {name: version_of(argv[0]) for name, argv in argvs.items()},
                        "tables": TABLES, "results": results})
    # A figure that could not be measured fails the run, so that CI's smoke pass notices rot.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
