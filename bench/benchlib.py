"""Helpers shared by the benchmark scripts: nearest-rank statistics, the process tree, the child
processes and their clean-up, the watchdog, the tables and the record of every table printed (the
scripts' --json output, from which bench/report.py writes BENCHMARKS.md)."""

import collections
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MESHWAIT = REPO / "target" / "x86_64-unknown-linux-musl" / "release" / "meshwait"
PYTHON = sys.executable  # the real interpreter, not a version-manager shim (one process less)
NETNS_MARK = "BENCH_NETNS"  # tells a script re-executed by enter_namespaces that it is inside


class Unmeasurable(Exception):
    """A figure (or one row of it) could not be measured; the message says why."""


class Watchdog(Exception):
    """The whole script ran past its time budget, or was asked to stop."""


def mono():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def median(values):
    return pct(values, 50)


def pct(values, p):
    """Nearest-rank percentile (no interpolation: every figure printed was actually observed)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def descendants(root):
    """All live descendants of `root`, from /proc."""
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            children[int(fields[1])].append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_times():
    """(total, steal, idle+iowait) jiffies from /proc/stat: how much of the machine others took."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0, fields[3] + fields[4]


def wait_until(predicate, timeout, step=0.01):
    deadline = mono() + timeout
    while mono() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def wait_for_file(path, timeout, step=0.0005):
    """The helper apps report each step by dropping a marker file."""
    return wait_until(lambda: os.path.exists(path), timeout, step)


def tail(path, limit=300):
    """The end of a child's stderr file, on one line, for a message saying why it failed."""
    try:
        text = Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:].replace("\n", " | ")


# --------------------------------------------------------------------------------------------
# Child processes: every one is registered so that it is cleaned up even when a figure fails.
# --------------------------------------------------------------------------------------------

def child_env():
    """The environment minus anything that could change a tool's behaviour or route traffic
    elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MESHWAIT_") and not k.lower().endswith("_proxy")
           and k != "TINI_SUBREAPER"}
    env["no_proxy"] = env["NO_PROXY"] = "*"
    return env


def signal_quietly(proc, sig):
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Children:
    def __init__(self, scratch):
        self.scratch = scratch
        self.procs = []
        self.count = 0

    def spawn(self, argv, errpath=None, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kw):
        """Starts argv with stderr kept in `errpath`, by default a new file in scratch (its `tail`
        says what went wrong); `kw` goes to Popen.

        Each child gets a new session: a Ctrl-C at the terminal reaches only this script, which
        then cleans up in order, and no wrapper can ever see (and grab) our terminal. Pipes are
        unbuffered: they are read after select(), which cannot see what a buffer already holds.
        """
        if errpath is None:
            self.count += 1
            errpath = self.scratch / f"stderr.{self.count}"
        with open(errpath, "wb") as err:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=err, bufsize=0,
                                    env=child_env(), start_new_session=True, close_fds=True, **kw)
        proc.errpath = errpath
        self.procs.append(proc)
        return proc

    def stop(self, procs, grace=3.0):
        """SIGTERM (which every wrapper forwards to its app), then, after `grace` seconds (none:
        at once), SIGKILL to each process still running and to what ran below it when the stop
        began: meshwait puts its app in a process group of its own, so the app is found through
        /proc, and it must not outlive the run (the next one binds the same port). Then closes
        the pipes and forgets the processes reaped."""
        live = [p for p in procs if p.poll() is None]
        below = {p.pid: descendants(p.pid) for p in live}
        if grace > 0:
            for proc in live:
                signal_quietly(proc, signal.SIGTERM)
            deadline = mono() + grace
            for proc in live:
                try:
                    proc.wait(timeout=max(0.0, deadline - mono()))
                except subprocess.TimeoutExpired:
                    pass
        for proc in live:
            signal_quietly(proc, signal.SIGKILL)
            kill_all(below[proc.pid])
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for proc in procs:
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self.procs = [p for p in self.procs if p.returncode is None]

    def cleanup(self):
        """Final sweep: stop what is registered, then kill any descendant left behind.

        Each script is a child subreaper or PID 1 of its own PID namespace, so an app orphaned
        by a killed wrapper is re-parented to it and is found in its process tree here rather
        than leaking.
        """
        self.stop([p for p in self.procs if p.poll() is None], grace=2.0)
        kill_all(descendants(os.getpid()))
        deadline = mono() + 3
        while mono() < deadline:  # reap re-parented orphans (bounded)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if not descendants(os.getpid()):
                    break
                time.sleep(0.02)


def version_of(path):
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, timeout=5, text=True,
                             env=child_env())
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


# --------------------------------------------------------------------------------------------
# The run: its namespaces, its time budget, its end.
# --------------------------------------------------------------------------------------------

def enter_namespaces(script, argv):
    """Re-executes `script` in new network, PID and mount namespaces, with a /proc of its own.

    The network namespace keeps the host's sockets out of every scan; the PID namespace and its
    /proc keep the host's processes out of `netstat -p` (which reads every process's fds, as it
    would in a pod, which has its own PID namespace too); and when the script (PID 1 there)
    exits, the kernel kills whatever it left, so nothing leaks. Returns only inside.
    """
    name = Path(script).name
    if os.environ.get(NETNS_MARK) != "1":
        unshare = shutil.which("unshare")
        if not unshare:
            sys.exit(f"{name} needs `unshare` (apt-get install util-linux)")
        os.environ[NETNS_MARK] = "1"
        sys.stdout.flush()
        os.execv(unshare, [unshare, "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
                           PYTHON, str(Path(script).resolve()), *argv])
    del os.environ[NETNS_MARK]  # not for the children
    if os.getpid() != 1:
        sys.exit(f"{name}: expected to be PID 1 of its own PID namespace after `unshare`")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)


def arm_watchdog(budget=None):
    """SIGTERM, SIGINT, SIGHUP and, after `budget` seconds (if given), SIGALRM raise Watchdog, so
    that a run that is stopped or overruns still cleans up what it started."""
    def stop(signum, _frame):
        raise Watchdog(f"stopped by {signal.Signals(signum).name}")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, stop)
    if budget is not None:
        signal.alarm(budget)


def run_figure(name, run, results, errors=(Unmeasurable, OSError, subprocess.SubprocessError), steal=True):
    """Runs one figure; True if it was measured. One that fails with `errors` is reported and
    recorded in results["errors"]; its time and how busy the machine was meanwhile (and how much
    of it the hypervisor took, with `steal`) go to results["machine"] and are printed, since a
    busy shared machine explains an odd figure."""
    t0, cpu0 = mono(), cpu_times()
    ok = True
    try:
        run()
    except errors as e:
        print(f"\nFigure '{name}' could not be measured: {type(e).__name__}: {e}")
        results.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
        ok = False
    cpu1 = cpu_times()
    total = max(1, cpu1[0] - cpu0[0])
    busy = 100 - 100 * (cpu1[2] - cpu0[2]) / total
    record = {"seconds": round(mono() - t0, 2), "cpu_busy_pct": round(busy, 1)}
    shown = f"all CPUs {busy:.0f}% busy"
    if steal:
        stolen = 100 * (cpu1[1] - cpu0[1]) / total
        record["steal_pct"] = round(stolen, 1)
        shown += f", {stolen:.1f}% stolen by the hypervisor"
    results.setdefault("machine", {})[name] = record
    print(f"  ({name}: {mono() - t0:.1f} s; {shown})", flush=True)
    return ok


def finish(kids, scratch, started, json_path, doc, meta=None):
    """The end of a run, however it went: no more alarm, no child left, no scratch directory;
    the time taken (into `meta` too, if given) and, with --json, what `doc()` returns written to
    `json_path` (built last, so that it holds all the run recorded)."""
    signal.alarm(0)
    kids.cleanup()
    shutil.rmtree(scratch, ignore_errors=True)
    if meta is not None:
        meta["seconds"] = round(mono() - started, 2)
    print(f"\ntotal time: {mono() - started:.1f} s")
    if json_path:
        Path(json_path).write_text(json.dumps(doc(), indent=1) + "\n")
        print(f"results written to {json_path}")


# --------------------------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------------------------

# Every table a script prints, in order: {"title", "headers", "rows", "notes"}.
TABLES = []


def record_table(title, headers, rows, notes):
    TABLES.append({"title": title, "headers": [str(h) for h in headers],
                   "rows": [[str(c) for c in row] for row in rows], "notes": [str(n) for n in notes]})


def print_table(title, headers, rows, notes=(), left=(0,)):
    """Numbers right-aligned, the columns in `left` (names, paths) left-aligned. A row of two
    cells is a name and a message, printed as is; cells beyond the headers are printed after
    their row."""
    record_table(title, headers, rows, notes)
    n = len(headers)
    table = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in table:
        for i, c in enumerate(row[:n] if len(row) > 2 or n <= 2 else row[:1]):
            widths[i] = max(widths[i], len(c))

    def fmt(cells):
        line = "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells[:n], widths)))
        return (line + "".join("  " + c for c in cells[n:])).rstrip()
    print(f"\n{title}")
    line = fmt(headers)
    print(line)
    print("-" * len(line))
    for row in table:
        print(row[0].ljust(widths[0]) + "  " + row[1] if len(row) == 2 and n > 2 else fmt(row))
    for note in notes:
        print(f"  note: {note}")
    sys.stdout.flush()


def verdict(ok):
    """A summary row's verdict on its target (None: it could not be measured)."""
    return "not measured" if ok is None else ("met" if ok else "NOT MET")


def machine():
    """Where and when a run happened, for the report's header."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "cpu_model": model, "mem_gib": round(mem_kib / 1048576, 1) if mem_kib else None,
            "python": platform.python_version(),
            # Relative to the working directory: drain.py re-executes itself by absolute path.
            "command": " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])}
