#!/usr/bin/env python3
"""Drain benchmark: meshwait's socket scans and stop-signal hold, next to netstat and ss.

    sudo python3 bench/drain.py [--meshwait PATH] [--quick] [--json FILE]

Runs as root, inside fresh network, PID and mount namespaces it creates for itself (a re-exec
under `unshare`, with a /proc of its own): no socket or process of the host is seen, and when the
script ends the kernel ends whatever it started. Everything is measured side by side in one run,
the tools interleaved round by round in a shuffled order, so that the noise of a shared machine
hits all of them alike; figures are medians and p90s (nearest rank: every number printed was
observed) and ratios.

  6. scan time               about 1k, 10k and 18k sockets (500, 5,000 and 9,000 established loopback
                              pairs held by one helper process, plus a few listeners): `netstat -tan`,
                              `netstat -plunt`, the troubleshooting guides' one pass of
                              `netstat -plunt | grep tcp | grep -v envoy | wc -l`, `ss -tan` and
                              `meshwait drain --until idle --timeout 0 --mesh none` (one scan),
                              and for information `meshwait conns --json --mesh none`; wall time
                              of each run (perf_counter around subprocess.run, stdout /dev/null).
                              Targets: meshwait >= 8x faster than netstat -plunt, >= 2x than ss.
  8. drain detection latency  `meshwait --mesh none --drain-timeout 10s --quiet-window 0 -- app`,
                              the app a small HTTP/1.1 server that holds one answer 500 ms; SIGTERM
                              reaches meshwait while the request is in flight (a random 0-300 ms
                              after the app has it). Latency = the app's clock in its SIGTERM
                              handler - the client's when the last answer byte arrived (both
                              CLOCK_MONOTONIC). Target <= 150 ms; with the default 1 s quiet
                              window the table shows latency - 1 s.
  2b. peak RSS while scanning about 10k, 50k and 100k sockets (several holder processes if
                              RLIMIT_NOFILE cannot be raised); peak RSS of the meshwait scans and of
                              `ss -tan`: VmHWM at exit under ptrace, cross-checked with GNU time's %M
                              (see run_peak_rss for why os.wait4 from this script cannot be used as
                              is). Target <= 1.5 MiB.
  (Figures 1-5 and 7 are bench/core.py's.)

--quick (CI smoke, < 60 s): 3 rounds instead of 30, and 10k and 40k sockets in (2b).
Python 3 standard library only; needs unshare (util-linux), ip and ss (iproute2), netstat
(net-tools), and optionally GNU time (time).
"""

import argparse
import ctypes
import errno
import json
import math
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from benchlib import (DEFAULT_MESHWAIT, PYTHON, REPO, TABLES, Children, Unmeasurable, Watchdog, arm_watchdog,
                      child_env, enter_namespaces, finish, machine, median, mono, pct, print_table, run_figure,
                      tail, verdict, version_of, wait_for_file)

PROGRAMS = Path(__file__).resolve().parent / "programs"
FALLBACK_MESHWAIT = REPO / "target" / "release" / "meshwait"

# The targets the summary checks, as stated in the project's goals.
TARGET_NETSTAT_RATIO = 8.0
TARGET_SS_RATIO = 2.0
TARGET_LATENCY_MS = 150.0
TARGET_RSS_KIB = 1536  # 1.5 MiB

# Established loopback pairs per scan size: about 1k, 10k and 18k sockets (two per pair, plus a
# few listeners). 18k is the most a pod's netstat loop was seen to face in the guides' setting.
SCAN_PAIRS = (500, 5_000, 9_000)
# Peak RSS while scanning about 10k, 50k and 100k sockets.
RSS_PAIRS, RSS_PAIRS_QUICK = (5_000, 25_000, 50_000), (5_000, 20_000)
SEEDS_PIPELINE = "netstat -plunt | grep tcp | grep -v envoy | wc -l"
HOLD_MS = 500
DRAIN_TIMEOUT = "10s"
DEFAULT_QUIET_S = 1.0  # meshwait's default --quiet-window
SIGTERM_SPREAD_S = 0.3  # SIGTERM goes out a random 0-300 ms after the app has the request
EMPTY_RUNS = 5  # runs of each tool in the empty namespace, for the fixed cost
SETTLE_S = 1.2  # after the farm is up: past the default quiet window, so every scan sees idle sockets
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None  # Debian package `time`

# Socket farm layout: servers listen on 127.0.0.1:7000+; each client socket is bound to
# its own (127.0.1.N, port) before it connects, so no ephemeral-port search is involved and the
# 4-tuples are unique by construction (ports below the ephemeral range, which stays free).
SERVER_ADDR = "127.0.0.1"
SERVER_PORT_BASE, SERVER_PORTS_PER_HOLDER = 7000, 4  # holder h listens on 7000+10h .. +3
EXTRA_LISTEN_PORTS = tuple(range(7900, 7904))  # listeners nobody connects to (first holder)
FD_SLACK = 64  # descriptors a holder needs besides its sockets (Python, pipes)
CLIENT_PORT_BASE, CLIENT_PORTS_PER_ADDR = 10_000, 20_000
BATCH = 1000  # connects per listener before they are accepted (below the backlog)


# --------------------------------------------------------------------------------------------
# The socket holder, a helper process. Run as `drain.py _farm ...`; prints one JSON line when done
# (or when it had to stop), then holds every socket until its stdin closes.
# --------------------------------------------------------------------------------------------

LIMIT_NAMES = {
    errno.EMFILE: "RLIMIT_NOFILE (open files per process)",
    errno.ENFILE: "fs.file-max (open files, system-wide)",
    errno.EADDRINUSE: "local address/port space (4-tuple already in use)",
    errno.EADDRNOTAVAIL: "local address/port space (no address or port left)",
    errno.ENOBUFS: "socket memory (net.ipv4.tcp_mem, or a memory cgroup)",
    errno.ENOMEM: "kernel memory (memory cgroup or system)",
    errno.ETIMEDOUT: "accept backlog (connect timed out: SYN dropped)",
    errno.ECONNREFUSED: "accept backlog (connection refused)",
}


def farm_main(argv):
    """`_farm COUNT OFFSET PORT_BASE EXTRA`: pairs OFFSET..OFFSET+COUNT-1 of the global layout,
    served by listeners on 127.0.0.1:PORT_BASE.. (plus the idle extra listeners if EXTRA is 1)."""
    count, offset, port_base, extra = (int(a) for a in argv)
    server_ports = tuple(range(port_base, port_base + SERVER_PORTS_PER_HOLDER))
    held = []
    linger0 = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT left behind at teardown
    report = {"ok": True, "pairs_wanted": count, "pairs": 0}
    started = mono()

    def fail(e, what):
        report["ok"] = False
        report["error"] = f"{what}: {type(e).__name__}: {e}"
        report["limit"] = ("accept backlog (connect or accept timed out)" if isinstance(e, TimeoutError)
                           else LIMIT_NAMES.get(getattr(e, "errno", None), "unknown"))

    need = 2 * count + SERVER_PORTS_PER_HOLDER + len(EXTRA_LISTEN_PORTS) + FD_SLACK
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    except (ValueError, OSError) as e:
        nr_open = Path("/proc/sys/fs/nr_open").read_text().strip()
        report.update(ok=False, limit="RLIMIT_NOFILE hard limit (raising it needs CAP_SYS_RESOURCE) / fs.nr_open",
                      error=f"cannot raise RLIMIT_NOFILE from {soft}/{hard} to {need} (fs.nr_open={nr_open}): {e}")
    report["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))

    listeners = []
    if report["ok"]:
        try:
            for port in server_ports + (EXTRA_LISTEN_PORTS if extra else ()):
                srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                srv.bind((SERVER_ADDR, port))
                srv.listen(4096)
                held.append(srv)
                if port in server_ports:
                    listeners.append(srv)
        except OSError as e:
            fail(e, "listen")
    report["listeners"] = len(held)

    i = 0
    while report["ok"] and i < count:
        srv = listeners[(i // BATCH) % len(listeners)]
        target = srv.getsockname()
        batch = min(BATCH, count - i)
        connected = 0
        try:
            for j in range(offset + i, offset + i + batch):
                addr = f"127.0.1.{1 + j // CLIENT_PORTS_PER_ADDR}"
                port = CLIENT_PORT_BASE + j % CLIENT_PORTS_PER_ADDR
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(c)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
                c.bind((addr, port))
                c.settimeout(3)  # a full backlog would otherwise stall connect for seconds
                c.connect(target)
                c.settimeout(None)
                connected += 1
        except OSError as e:
            held.pop().close()  # the socket that failed is not a pair
            fail(e, f"client socket {offset + i + connected}")
        accepted = 0
        try:
            srv.settimeout(3)
            for _ in range(connected):
                conn, _ = srv.accept()
                held.append(conn)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
                accepted += 1
        except OSError as e:
            if report["ok"]:
                fail(e, f"accept after {offset + i + accepted} pairs")
        i += accepted
        report["pairs"] = i
    report["sockets"] = len(held)
    report["seconds"] = round(mono() - started, 3)
    os.write(1, (json.dumps(report) + "\n").encode())
    try:
        sys.stdin.buffer.read()  # hold everything until the benchmark closes our stdin
    finally:
        os._exit(0)  # the kernel closes the sockets (with RST: SO_LINGER 0); no destructors


# --------------------------------------------------------------------------------------------
# Small helpers: ratios, the socket farm, /proc, ss.
# --------------------------------------------------------------------------------------------


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def nofile_per_holder(need):
    """Descriptors one holder process may open: `need` if RLIMIT_NOFILE can be raised that far
    (this process tries on itself, hard limit only, so the tools it starts are unaffected),
    else the hard limit as it is (raising it needs CAP_SYS_RESOURCE, which a container may lack)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard >= need:
        return need, None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, need))
        return need, None
    except (ValueError, OSError) as e:
        return hard, f"RLIMIT_NOFILE hard limit {hard} cannot be raised to {need} ({e}; CAP_SYS_RESOURCE missing?)"


class Farm:
    """`pairs` established loopback pairs, held by as few helper processes as RLIMIT_NOFILE
    allows (one when it can be raised); a context manager. `report` merges the holders'."""

    def __init__(self, kids, scratch, pairs, timeout):
        self.kids, self.pairs, self.timeout = kids, pairs, timeout
        self.scratch = scratch
        self.procs = []
        self.report = None

    def __enter__(self):
        per_pair = 2
        fixed = SERVER_PORTS_PER_HOLDER + len(EXTRA_LISTEN_PORTS) + FD_SLACK
        cap, why = nofile_per_holder(per_pair * self.pairs + fixed)
        per_holder = max(1, (cap - fixed) // per_pair)
        holders = math.ceil(self.pairs / per_holder)
        report = {"ok": True, "pairs_wanted": self.pairs, "pairs": 0, "sockets": 0, "listeners": 0,
                  "holders": holders, "pairs_per_holder": per_holder, "seconds": 0.0,
                  "nofile_note": why, "nofile": None}
        deadline = mono() + self.timeout
        try:
            for h in range(holders):
                count = min(per_holder, self.pairs - h * per_holder)
                errpath = self.scratch / f"farm.{self.pairs}.{h}.stderr"
                proc = self.kids.spawn([PYTHON, str(Path(__file__).resolve()), "_farm", str(count),
                                        str(h * per_holder), str(SERVER_PORT_BASE + 10 * h), str(int(h == 0))],
                                       errpath, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                self.procs.append(proc)
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - mono()))
                line = proc.stdout.readline() if ready else b""
                if not line:
                    raise Unmeasurable(f"socket holder {h + 1}/{holders} did not report within "
                                       f"{self.timeout:.0f} s: {tail(errpath)}")
                part = json.loads(line)
                for key in ("pairs", "sockets", "listeners", "seconds"):
                    report[key] += part[key]
                report["nofile"] = part["nofile"]
                if not part["ok"]:
                    report.update(ok=False, error=part["error"], limit=part["limit"])
                    break
        except BaseException:
            self.__exit__()
            raise
        report["seconds"] = round(report["seconds"], 3)
        self.report = report
        return self

    def __exit__(self, *_):
        for proc in self.procs:
            try:
                proc.stdin.close()  # the holder exits; the kernel resets and frees every socket
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kids.stop([proc], grace=0)
        self.kids.stop(self.procs, grace=0)  # closes their pipes
        self.procs = []

    def describe(self):
        r = self.report
        text = (f"{r['pairs']:,} of {r['pairs_wanted']:,} pairs ({r['sockets']:,} sockets, "
                f"{r['listeners']} listeners) in {r['seconds']:.2f} s, held by {r['holders']} "
                f"process{'es' if r['holders'] > 1 else ''}")
        if r["nofile_note"]:
            text += f" [{r['nofile_note']}]"
        if not r["ok"]:
            text += f"; STOPPED: {r['error']} (limit hit: {r['limit']})"
        return text


def count_sockets():
    """(established, listening) TCP sockets in this namespace, as ss sees them."""
    def lines(args):
        out = subprocess.run(["ss", "-Htn", *args], capture_output=True, timeout=60, check=True)
        return out.stdout.count(b"\n")
    try:
        return lines(["state", "established"]), lines(["state", "listening"])
    except (OSError, subprocess.SubprocessError):
        return None, None


# --------------------------------------------------------------------------------------------
# meshwait: which binary, and what it can do yet.
# --------------------------------------------------------------------------------------------

def pick_meshwait(arg):
    if arg:
        return Path(arg) if os.access(arg, os.X_OK) else None
    for path in (DEFAULT_MESHWAIT, FALLBACK_MESHWAIT):
        if os.access(path, os.X_OK):
            return path
    return None


def meshwait_features(meshwait):
    """{'drain', 'conns', 'hold'} -> True/False, by cheap probes that cannot hang.

    MESHWAIT_MESH=none matters for a binary without these subcommands: it would take `drain` for
    the app's name and gate it on the Istio preset for two minutes; with no gate it exits 127.
    """
    feats = {"drain": False, "conns": False, "hold": False}
    if not meshwait:
        return feats
    env = dict(child_env(), MESHWAIT_MESH="none")

    def ok(argv):
        try:
            return subprocess.run([str(meshwait), *argv], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=5).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
    feats["drain"] = ok(["drain", "--help"])
    feats["conns"] = ok(["conns", "--help"])
    feats["hold"] = ok(["--mesh", "none", "--drain-timeout", DRAIN_TIMEOUT, "--quiet-window", "0",
                        "--", "true"])
    return feats


# --------------------------------------------------------------------------------------------
# Running a one-shot tool: wall time, exit code, peak RSS.
# --------------------------------------------------------------------------------------------

def run_timed(argv, errpath, ok_codes):
    """Wall time (perf_counter around subprocess.run, stdout to /dev/null), in ms; exit code.

    No `timeout=` here: with one, Popen.wait polls with sleeps doubling from 0.5 ms up to 50 ms,
    and every time measured snaps to the end of a sleep (15.5, 31.5, 63.5, 113.5 ms...). Without
    it the wait is one blocking waitpid; a hung tool is caught by the script's overall alarm.
    """
    with open(errpath, "wb") as err:
        t0 = time.perf_counter()
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                              env=child_env())
        elapsed = (time.perf_counter() - t0) * 1000
    if done.returncode not in ok_codes:
        raise Unmeasurable(f"exit {done.returncode}: {tail(errpath)}")
    return elapsed, done.returncode


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_TRACEME, PTRACE_CONT, PTRACE_SETOPTIONS = 0, 7, 0x4200
PTRACE_O_TRACEEXIT, PTRACE_O_EXITKILL, PTRACE_EVENT_EXIT = 0x40, 0x100000, 6


def _traceme():  # runs in the child between fork and exec
    _libc.ptrace(PTRACE_TRACEME, 0, None, None)


def run_peak_rss(argv, errpath, ok_codes):
    """(VmHWM of the tool at its exit in KiB, ru_maxrss from os.wait4 in KiB, exit code).

    os.wait4's ru_maxrss is not the tool's alone: at execve Linux folds the peak of the image
    being replaced into it, and here that image is this Python process (fork or vfork, either
    way), tens of MiB. So the tool runs under ptrace with PTRACE_O_TRACEEXIT: it stops on its
    way out with its memory still mapped, and /proc/PID/status VmHWM then is the peak RSS of
    the tool's own image. Both figures are returned; the table shows VmHWM (and GNU time's %M,
    which is wait4's ru_maxrss taken by a small parent, as a cross-check).
    """
    with open(errpath, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=child_env(), preexec_fn=_traceme)
    hwm = None
    try:
        _, status = os.waitpid(proc.pid, 0)  # the SIGTRAP of a traced execve
        if not os.WIFSTOPPED(status):
            raise Unmeasurable(f"did not stop at exec under ptrace (status {status:#x}): {tail(errpath)}")
        if _libc.ptrace(PTRACE_SETOPTIONS, proc.pid, None,
                        ctypes.c_void_p(PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL)) != 0:
            raise Unmeasurable(f"ptrace(SETOPTIONS): {os.strerror(ctypes.get_errno())}")
        _libc.ptrace(PTRACE_CONT, proc.pid, None, None)
        while True:
            _, status, usage = os.wait4(proc.pid, 0)
            if not os.WIFSTOPPED(status):
                break
            if status >> 8 == signal.SIGTRAP | (PTRACE_EVENT_EXIT << 8):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm = int(line.split()[1])
                _libc.ptrace(PTRACE_CONT, proc.pid, None, None)
            else:  # a signal for the tool: deliver it
                _libc.ptrace(PTRACE_CONT, proc.pid, None, ctypes.c_void_p(os.WSTOPSIG(status)))
    except BaseException:
        try:
            proc.kill()
            os.waitpid(proc.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        proc.returncode = -9
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok_codes:
        raise Unmeasurable(f"exit {proc.returncode}: {tail(errpath)}")
    if hwm is None:
        raise Unmeasurable("no exit stop seen under ptrace")
    return hwm, usage.ru_maxrss, proc.returncode


def run_gnu_time_rss(argv, errpath, ok_codes):
    """GNU time's %M (wait4's ru_maxrss, from a parent small enough not to mask it), KiB."""
    out = errpath.with_suffix(".time")
    with open(errpath, "wb") as err:
        done = subprocess.run([GNU_TIME, "-f", "%M", "-o", str(out), *argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=err, env=child_env(), timeout=60)
    if done.returncode not in ok_codes:
        raise Unmeasurable(f"exit {done.returncode}: {tail(errpath)}")
    return int(out.read_text().split()[-1])


def scan_tools(meshwait, feats):
    """name -> (argv, accepted exit codes, why unavailable or None), in table order."""
    tools = {}
    mw = str(meshwait) if meshwait else None
    why_mw = ("no meshwait binary" if not meshwait else
              None if feats["drain"] else "this meshwait has no `drain` subcommand yet")
    tools["meshwait drain"] = ([mw, "drain", "--until", "idle", "--timeout", "0", "--mesh", "none"],
                               {0, 1}, why_mw)
    why_conns = ("no meshwait binary" if not meshwait else
                 None if feats["conns"] else "this meshwait has no `conns` subcommand yet")
    tools["meshwait conns --json"] = ([mw, "conns", "--json", "--mesh", "none"], {0}, why_conns)
    tools["ss -tan"] = (["ss", "-tan"], {0}, None if shutil.which("ss") else
                        "ss not installed (apt-get install iproute2)")
    no_netstat = None if shutil.which("netstat") else "netstat not installed (apt-get install net-tools)"
    tools["netstat -tan"] = (["netstat", "-tan"], {0}, no_netstat)
    tools["netstat -plunt"] = (["netstat", "-plunt"], {0}, no_netstat)
    # The troubleshooting guides' preStop loop, one pass of it (a shell and three more processes).
    tools[SEEDS_PIPELINE] = (["sh", "-c", SEEDS_PIPELINE], {0}, no_netstat)
    return tools


def check_conns_output(meshwait, feats):
    """One `meshwait conns --json` parsed: how many sockets it lists and its summary."""
    if not feats["conns"]:
        return None
    try:
        out = subprocess.run([str(meshwait), "conns", "--json", "--mesh", "none"], capture_output=True,
                             env=child_env(), timeout=60)
        doc = json.loads(out.stdout)
        return {"sockets": len(doc.get("sockets", [])), "summary": doc.get("summary")}
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def conns_note(conns):
    if not conns:
        return []
    if "error" in conns:
        return [f"meshwait conns --json output did not parse: {conns['error']}"]
    return [f"meshwait conns --json listed {conns['sockets']:,} sockets; its summary: "
            + json.dumps(conns["summary"], separators=(", ", ": "))]


# --------------------------------------------------------------------------------------------
# Figure 6: scan time at 1k, 10k and 18k sockets.
# --------------------------------------------------------------------------------------------

def figure_scan(kids, scratch, meshwait, feats, rounds, pairs, results):
    tools = scan_tools(meshwait, feats)
    live = [n for n, (_, _, why) in tools.items() if why is None]
    errors = {n: why for n, (_, _, why) in tools.items() if why}
    samples = {n: [] for n in tools}
    codes = {n: {} for n in tools}
    per_round = []
    # The same tools with no socket at all: their fixed cost. Each inet_diag dump walks the whole
    # TCP hash table, which the namespace shares with the host (tcp_ehash_entries < 0).
    empty = {}
    for _ in range(EMPTY_RUNS):
        for name in live:
            argv, ok_codes, _ = tools[name]
            try:
                empty.setdefault(name, []).append(run_timed(argv, scratch / "scan.stderr", ok_codes)[0])
            except (Unmeasurable, OSError, subprocess.SubprocessError):
                pass  # the main rounds report the failure
    try:
        ehash = int(Path("/proc/sys/net/ipv4/tcp_ehash_entries").read_text())
    except (OSError, ValueError):
        ehash = None
    with Farm(kids, scratch, pairs, timeout=60) as farm:
        rep = farm.report
        if not rep["ok"]:
            raise Unmeasurable(f"socket farm: {farm.describe()}")
        # Past meshwait's default 1 s quiet window, so every scan sees the same (idle) sockets.
        time.sleep(SETTLE_S)
        estab, listening = count_sockets()
        print(f"  farm: {farm.describe()}; ss sees {estab} established, {listening} listening", flush=True)
        conns = check_conns_output(meshwait, feats)
        shuffle = random.Random(1)
        for rnd in range(rounds + 1):  # round 0 warms caches and is not counted
            order = list(live)
            shuffle.shuffle(order)
            row = {}
            for name in order:
                argv, ok_codes, _ = tools[name]
                try:
                    ms, code = run_timed(argv, scratch / "scan.stderr", ok_codes)
                except (Unmeasurable, OSError, subprocess.SubprocessError) as e:
                    errors[name] = str(e)
                    live.remove(name)
                    continue
                if rnd > 0:
                    samples[name].append(ms)
                    codes[name][code] = codes[name].get(code, 0) + 1
                    row[name] = ms
            if rnd > 0:
                per_round.append(row)

    base = samples["meshwait drain"]
    base_med = median(base) if base else None
    base_p90 = pct(base, 90) if base else None
    rows, out = [], {}
    for name, (argv, _, _) in tools.items():
        s = samples[name]
        if not s:
            rows.append([name, f"not measured: {errors.get(name, 'no sample')}"])
            out[name] = {"argv": argv, "error": errors.get(name, "no sample")}
            continue
        paired = [r[name] / r["meshwait drain"] for r in per_round if name in r and "meshwait drain" in r]
        r_med = median(s) / base_med if base_med else None
        r_p90 = pct(s, 90) / base_p90 if base_p90 else None
        r_pair = median(paired) if paired else None
        rows.append([name, len(s), f"{min(s):.2f}", f"{median(s):.2f}", f"{pct(s, 90):.2f}", f"{max(s):.2f}",
                     fmt_ratio(r_med), fmt_ratio(r_p90), fmt_ratio(r_pair),
                     " ".join(f"{c}:{n}" for c, n in sorted(codes[name].items()))])
        out[name] = {"argv": argv, "samples_ms": [round(x, 3) for x in s], "min_ms": min(s),
                     "median_ms": median(s), "p90_ms": pct(s, 90), "max_ms": max(s),
                     "exit_codes": codes[name], "ratio_to_meshwait_median": r_med,
                     "ratio_to_meshwait_p90": r_p90, "ratio_to_meshwait_paired_median": r_pair}
        if name in errors:
            rows[-1].append(f"(stopped: {errors[name]})")
    notes = [f"{rounds} rounds (+1 warm-up not counted); each round runs every tool once, in a shuffled order.",
             "x meshwait: this tool's time / `meshwait drain`'s: median over median, p90 over p90, and the "
             "median of the per-round ratios.",
             "netstat -plunt prints listeners only, but reads all of /proc/net/tcp and, for -p, every "
             f"process's /proc/PID/fd (the farm holds {2 * pairs:,} descriptors).",
             "meshwait drain: exit 0 = nothing busy, 1 = busy; both count. exits: code:runs."]
    notes += conns_note(conns)
    if empty:
        table = (f"{abs(ehash):,} buckets{', shared with the host' if ehash < 0 else ''}"
                 if ehash is not None else "size unknown")
        notes.append("with no sockets at all (same namespace, before the farm; median of "
                     f"{EMPTY_RUNS}): " + ", ".join(f"{n} {median(v):.2f} ms" for n, v in empty.items())
                     + f". Each netlink dump walks the whole TCP hash table ({table}).")
    print_table(f"Figure 6. Scan time at {rep['sockets']:,} TCP sockets ({rep['pairs']:,} established "
                "loopback pairs + listeners), ms per run, wall clock",
                ["tool", "runs", "min", "median", "p90", "max", "x meshwait (median)", "(p90)",
                 "(per round)", "exits"], rows, notes)
    results.setdefault("scan", {})[str(pairs)] = {"farm": rep, "ss_established": estab, "ss_listening": listening,
                           "no_sockets_median_ms": {n: median(v) for n, v in empty.items()},
                           "tcp_ehash_entries": ehash,
                           "rounds": rounds, "tools": out, "meshwait_conns_check": conns}


# --------------------------------------------------------------------------------------------
# Figure 8: drain detection latency.
# --------------------------------------------------------------------------------------------

APP_PORT = 18080


def one_drain_run(kids, scratch, run_dir, argv, delay_s):
    """One request held by the app; SIGTERM `delay_s` after the app has it. Returns the clocks."""
    run_dir.mkdir()
    proc = kids.spawn(argv + [PYTHON, str(PROGRAMS / "hold_app.py"), str(APP_PORT), str(run_dir), str(HOLD_MS)],
                      run_dir / "stderr", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    client = None
    try:
        if not wait_for_file(run_dir / "listening", 10) or proc.poll() is not None:
            raise Unmeasurable(f"the app did not start (exit {proc.poll()}): {tail(run_dir / 'stderr')}")
        client = socket.create_connection(("127.0.0.1", APP_PORT), timeout=5)
        t_sent = mono()
        client.sendall(b"GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: drain-bench\r\n\r\n")
        if not wait_for_file(run_dir / "received", 5):
            raise Unmeasurable("the app never saw the request")
        if delay_s:
            time.sleep(delay_s)
        t_kill = mono()
        os.kill(proc.pid, signal.SIGTERM)  # meshwait, or the app itself in the control
        # Read the whole answer: headers, then Content-Length bytes of body.
        client.settimeout(HOLD_MS / 1000 + 15)
        buf, t_done, cut = b"", None, None
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    cut = "connection closed before the whole answer"
                    break
                buf += chunk
                head, sep, body = buf.partition(b"\r\n\r\n")
                if sep:
                    length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                                   if l.lower().startswith(b"content-length:")), 0)
                    if len(body) >= length:
                        t_done = mono()
                        break
        except ConnectionResetError:
            cut = "connection reset before the whole answer"
        except socket.timeout:
            cut = "no whole answer within the time bound"
        # Keep the (keep-alive) connection open, as a client's pool would, until the app is told.
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Unmeasurable("the process did not exit within 30 s of SIGTERM")
        try:
            t_sig = float((run_dir / "sigterm").read_text())
        except (OSError, ValueError):
            raise Unmeasurable(f"the app never got SIGTERM (exit {code}): {tail(run_dir / 'stderr')}")
        return {"t_sent": t_sent, "t_kill": t_kill, "t_done": t_done, "t_sig": t_sig, "exit": code,
                "cut": cut, "delay_ms": delay_s * 1000,
                "latency_ms": (t_sig - t_done) * 1000 if t_done else None,
                "signal_after_kill_ms": (t_sig - t_kill) * 1000}
    finally:
        if client:
            client.close()
        kids.stop([proc], grace=0)


def figure_latency(kids, scratch, meshwait, feats, rounds, control_runs, quick, results):
    mw = str(meshwait) if meshwait else None
    hold = [mw, "--mesh", "none", "--drain-timeout", DRAIN_TIMEOUT]
    # name -> (argv prefix, quiet window subtracted (s), SIGTERM delay after the request is in, runs)
    variants = {
        "meshwait --quiet-window 0": (hold + ["--quiet-window", "0", "--"], 0.0, "random", rounds),
        "meshwait, default quiet window (1s)": (hold + ["--"], DEFAULT_QUIET_S, "random", rounds),
        "meshwait --quiet-window 0, SIGTERM at once": (hold + ["--quiet-window", "0", "--"], 0.0, "at once",
                                                       0 if quick else rounds),
        "no wrapper (control: SIGTERM to the app)": ([], 0.0, "random", control_runs),
    }
    errors = {}
    if not meshwait or not feats["hold"]:
        why = "no meshwait binary" if not meshwait else \
            "this meshwait rejects --drain-timeout/--quiet-window (no stop-signal hold yet)"
        for name in variants:
            if name.startswith("meshwait"):
                errors[name] = why
    outcomes = {n: [] for n in variants}
    counter = 0
    shuffle = random.Random(2)
    for rnd in range(rounds):
        order = [n for n, v in variants.items() if n not in errors and rnd < v[3]]
        shuffle.shuffle(order)
        for name in order:
            counter += 1
            delay = 0.0 if variants[name][2] == "at once" else shuffle.uniform(0, SIGTERM_SPREAD_S)
            try:
                o = one_drain_run(kids, scratch, scratch / f"run.{counter}", variants[name][0], delay)
            except (Unmeasurable, OSError) as e:
                errors.setdefault(name, f"run {counter}: {e}")
                continue
            outcomes[name].append(o)

    rows, out = [], {}
    for name, (argv, quiet, when, runs) in variants.items():
        got = outcomes[name]
        if not got:
            if runs:
                rows.append([name, f"not measured: {errors.get(name, 'no run')}"])
                out[name] = {"error": errors.get(name, "no run")}
            continue
        done = [o for o in got if o["latency_ms"] is not None]
        lat = [o["latency_ms"] - quiet * 1000 for o in done]
        early = sum(1 for o in got if o["cut"] or (o["latency_ms"] is not None and o["latency_ms"] < 0))
        held = [o["signal_after_kill_ms"] for o in got]
        bad_exit = sum(1 for o in got if o["exit"] != 0)
        stats = ([f"{min(lat):.1f}", f"{median(lat):.1f}", f"{pct(lat, 90):.1f}", f"{max(lat):.1f}"]
                 if lat else ["-"] * 4)
        rows.append([name, len(got), *stats, f"{median(held):.1f}", early, bad_exit])
        out[name] = {"argv_prefix": argv, "quiet_window_subtracted_s": quiet, "sigterm": when,
                     "runs": len(got), "latency_ms": [round(x, 3) for x in lat],
                     "min_ms": min(lat) if lat else None, "median_ms": median(lat) if lat else None,
                     "p90_ms": pct(lat, 90) if lat else None, "max_ms": max(lat) if lat else None,
                     "sigterm_delay_ms": [round(o["delay_ms"], 1) for o in got],
                     "signal_after_kill_ms": [round(x, 3) for x in held],
                     "early_or_cut": early, "nonzero_exit": bad_exit,
                     "cuts": sorted({o["cut"] for o in got if o["cut"]})}
        if name in errors:
            rows[-1].append(f"(failures: {errors[name]})")
    notes = [f"the app holds each answer {HOLD_MS} ms; SIGTERM goes to meshwait a random 0-"
             f"{SIGTERM_SPREAD_S * 1000:.0f} ms after the app has the request, so it meets meshwait's "
             "scan schedule at a random phase, as a real one would.",
             "latency = the app's CLOCK_MONOTONIC in its SIGTERM handler - the client's when the last "
             "byte of the answer arrived; the default-window row shows latency - 1 s.",
             "the client keeps its keep-alive connection open after the answer (as a connection pool would).",
             "early/cut: the app got SIGTERM before its answer was out; the control row shows what "
             "happens without a hold: the request is cut.",
             "SIGTERM->app: from the SIGTERM sent to the app's handler (the rest of the hold + latency).",
             f"meshwait runs with --drain-timeout {DRAIN_TIMEOUT}; the variants run in a shuffled order "
             "each round."]
    if not quick:
        notes.append(f"'SIGTERM at once' is the protocol without the random delay: the hold then lasts "
                     f"{HOLD_MS} ms from the SIGTERM, a whole number of meshwait's 100 ms polls, so a poll "
                     "lands just after the answer (a best case, not a typical one).")
    print_table("Figure 8. Drain detection latency (ms): answer complete -> SIGTERM reaches the app",
                ["variant", "runs", "min", "median", "p90", "max", "SIGTERM->app (median)", "early/cut",
                 "exit!=0"], rows, notes)
    results["drain_latency"] = {"hold_ms": HOLD_MS, "sigterm_spread_ms": SIGTERM_SPREAD_S * 1000,
                                "rounds": rounds, "variants": out}


# --------------------------------------------------------------------------------------------
# Figure 2b: peak RSS during a scan of 10k, 50k and 100k sockets.
# --------------------------------------------------------------------------------------------

def figure_rss(kids, scratch, meshwait, feats, pairs, repeats, budget_left, results):
    tools = scan_tools(meshwait, feats)
    names = ["meshwait drain", "meshwait conns --json", "ss -tan"]
    errors = {n: tools[n][2] for n in names if tools[n][2]}
    live = [n for n in names if n not in errors]
    hwm = {n: [] for n in names}
    gtime = {n: [] for n in names}
    wait4_raw = {n: [] for n in names}
    wall = {n: [] for n in names}
    with Farm(kids, scratch, pairs, timeout=max(10.0, min(180.0, budget_left() - 5))) as farm:
        rep = farm.report
        time.sleep(SETTLE_S)  # as in figure 6: the scans see idle sockets, all alike
        estab, listening = count_sockets()
        print(f"  farm: {farm.describe()}; ss sees {estab} established, {listening} listening", flush=True)
        conns = check_conns_output(meshwait, feats)
        shuffle = random.Random(3)
        for _ in range(repeats):
            order = list(live)
            shuffle.shuffle(order)
            for name in order:
                argv, ok_codes, _ = tools[name]
                try:
                    kib, raw, _ = run_peak_rss(argv, scratch / "rss.stderr", ok_codes)
                    hwm[name].append(kib)
                    wait4_raw[name].append(raw)
                    if GNU_TIME:
                        gtime[name].append(run_gnu_time_rss(argv, scratch / "rss.stderr", ok_codes))
                    wall[name].append(run_timed(argv, scratch / "rss.stderr", ok_codes)[0])
                except (Unmeasurable, OSError, subprocess.SubprocessError, ValueError) as e:
                    errors[name] = str(e)
                    live.remove(name)

    rows, out = [], {}
    base = median(hwm["meshwait drain"]) if hwm["meshwait drain"] else None
    for name in names:
        s, g = hwm[name], gtime[name]
        if not s:
            rows.append([name, f"not measured: {errors.get(name, 'no sample')}"])
            out[name] = {"error": errors.get(name, "no sample")}
            continue
        rows.append([name, len(s), min(s), median(s), max(s), f"{max(s) / 1024:.2f}",
                     f"{median(g)} / {max(g)}" if g else "n/a",
                     f"{median(wall[name]):.1f}" if wall[name] else "n/a",
                     fmt_ratio(median(s) / base if base else None)])
        out[name] = {"argv": tools[name][0], "vmhwm_kib": s, "median_kib": median(s), "max_kib": max(s),
                     "max_mib": max(s) / 1024, "gnu_time_maxrss_kib": g,
                     "wait4_from_python_maxrss_kib": wait4_raw[name],
                     "wall_ms": [round(x, 3) for x in wall[name]],
                     "wall_median_ms": median(wall[name]) if wall[name] else None}
        if name in errors:
            rows[-1].append(f"(stopped: {errors[name]})")
    raw = [x for n in names for x in wait4_raw[n]]
    notes = ["peak RSS = VmHWM of the tool's own image, read under ptrace when it stops on its way out "
             "(PTRACE_O_TRACEEXIT), KiB; stdout to /dev/null.",
             "GNU time %M = wait4's ru_maxrss taken by /usr/bin/time; a cross-check (it includes time's own "
             "forked image, a few hundred KiB, when the tool's peak is lower)." if GNU_TIME else
             "GNU time not installed (apt-get install time): no wait4 cross-check.",
             (f"os.wait4 from this script reports {min(raw)}-{max(raw)} KiB for every tool alike: execve folds "
              "the replaced image (this Python process) into ru_maxrss, so it is not used." if raw else ""),
             "verdict: the larger of the VmHWM and %M maxima over runs."]
    notes = [n for n in notes if n] + conns_note(conns)
    if not rep["ok"]:
        notes.append(f"the farm stopped early: {rep['error']} -- limit hit: {rep['limit']}.")
    print_table(f"Figure 2b. Peak RSS while scanning {rep['sockets']:,} TCP sockets "
                f"({rep['pairs']:,} established pairs, {repeats} runs each)",
                ["tool", "runs", "VmHWM min KiB", "median", "max", "max MiB", "GNU time %M median / max",
                 "wall ms (median)", "x meshwait"], rows, notes)
    results.setdefault("rss", {})[str(pairs)] = {"farm": rep, "ss_established": estab, "ss_listening": listening,
                           "repeats": repeats, "tools": out, "meshwait_conns_check": conns}


# --------------------------------------------------------------------------------------------
# Summary.
# --------------------------------------------------------------------------------------------

def summary(results, quick):
    rows = []
    scans = results.get("scan", {})
    tools = scans[max(scans, key=int)].get("tools", {}) if scans else {}
    for key, label, target in (("netstat -plunt", "scan >= 8x faster than netstat -plunt", TARGET_NETSTAT_RATIO),
                               ("ss -tan", "scan >= 2x faster than ss -tan", TARGET_SS_RATIO)):
        r = tools.get(key, {}).get("ratio_to_meshwait_median")
        p = tools.get(key, {}).get("ratio_to_meshwait_p90")
        shown = (f"{r:.2f}x median ({tools[key]['median_ms']:.2f} vs {tools['meshwait drain']['median_ms']:.2f} ms)"
                 f", {p:.2f}x p90" if r else "n/a")
        rows.append([label, shown, verdict(None if r is None else r >= target)])
    lat = results.get("drain_latency", {}).get("variants", {})
    q0 = lat.get("meshwait --quiet-window 0", {})
    label = "drain latency <= 150 ms (quiet window 0)"
    if q0.get("median_ms") is not None:
        ok = q0["max_ms"] <= TARGET_LATENCY_MS and q0["early_or_cut"] == 0
        rows.append([label, f"median {q0['median_ms']:.1f}, p90 {q0['p90_ms']:.1f}, max {q0['max_ms']:.1f} ms; "
                            f"{q0['early_or_cut']} early", verdict(ok) + " (all runs)"])
    else:
        rows.append([label, "n/a", verdict(None)])
    qd = lat.get("meshwait, default quiet window (1s)", {})
    if qd.get("median_ms") is not None:
        rows.append(["  default 1 s window: latency - 1 s",
                     f"median {qd['median_ms']:.1f}, p90 {qd['p90_ms']:.1f}, max {qd['max_ms']:.1f} ms; "
                     f"{qd['early_or_cut']} early", "(information)"])
    rss_runs = results.get("rss", {})
    rss = rss_runs[max(rss_runs, key=int)] if rss_runs else {}
    worst = None
    for n in ("meshwait drain", "meshwait conns --json"):
        t = rss.get("tools", {}).get(n, {})
        for x in [t.get("max_kib")] + [max(t.get("gnu_time_maxrss_kib") or [0])]:
            if x:
                worst = max(worst or 0, x)
    sockets = rss.get("farm", {}).get("sockets", 0)
    label = f"peak RSS <= 1.5 MiB scanning {sockets:,} sockets"
    rows.append([label, f"{worst} KiB = {worst / 1024:.2f} MiB (max of drain and conns)" if worst else "n/a",
                 verdict(None if worst is None else worst <= TARGET_RSS_KIB)])
    notes = ["--quick: 3 rounds, 20k pairs at most in figure 2b: a smoke check, not a measurement."] if quick else []
    print_table(f"Summary ({Path(__file__).name}): meshwait against its targets", ["target", "measured", "verdict"], rows, notes)
    results["verdicts"] = {row[0].strip(): row[2] for row in rows}


# --------------------------------------------------------------------------------------------

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_farm":
        return farm_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshwait", help=f"meshwait binary (default: {DEFAULT_MESHWAIT.relative_to(REPO)}, "
                                           f"else {FALLBACK_MESHWAIT.relative_to(REPO)})")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 20k pairs at most in figure 2b (CI, < 60 s)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("drain.py must run as root: it creates network and PID namespaces and raises RLIMIT_NOFILE "
                 "(try: sudo python3 bench/drain.py)")
    if not shutil.which("ip"):
        sys.exit("drain.py needs `ip` (apt-get install iproute2)")

    started = mono()
    budget = 60 if args.quick else 1500
    rounds = 3 if args.quick else 30
    control_runs = 1 if args.quick else 3
    rss_pairs = RSS_PAIRS_QUICK if args.quick else RSS_PAIRS
    rss_repeats = 2 if args.quick else 10

    enter_namespaces(__file__, sys.argv[1:])
    arm_watchdog(budget)

    meshwait = pick_meshwait(args.meshwait)
    feats = meshwait_features(meshwait)
    results = {"meta": {
        "mode": "quick" if args.quick else "full", "host": platform.node(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg(),
        "meshwait": str(meshwait) if meshwait else None,
        "meshwait_version": version_of(meshwait) if meshwait else None, "meshwait_features": feats,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    mode = "quick" if args.quick else "full"
    print(f"meshwait drain benchmark ({mode}) on {platform.node()}: Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}, "
          f"in its own network and PID namespaces")
    if meshwait:
        print(f"  meshwait  {meshwait}  ({results['meta']['meshwait_version']}; "
              + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in feats.items()) + ")")
    else:
        print(f"  meshwait  not found ({args.meshwait or DEFAULT_MESHWAIT}); its rows say 'not measured'")
    for tool, pkg in (("ss", "iproute2"), ("netstat", "net-tools")):
        print(f"  {tool:9} {shutil.which(tool) or f'not installed (apt-get install {pkg})'}")
    sys.stdout.flush()

    scratch = Path(tempfile.mkdtemp(prefix="meshwait-drain-bench-"))
    kids = Children(scratch)
    budget_left = lambda: budget - (mono() - started)
    figures = [(f"scan time, {p:,} pairs",
                lambda p=p: figure_scan(kids, scratch, meshwait, feats, rounds, p, results))
               for p in SCAN_PAIRS]
    figures.append(("drain latency", lambda: figure_latency(kids, scratch, meshwait, feats, rounds,
                                                            control_runs, args.quick, results)))
    figures += [(f"peak RSS, {p:,} pairs",
                 lambda p=p: figure_rss(kids, scratch, meshwait, feats, p, rss_repeats, budget_left, results))
                for p in rss_pairs]
    status = 0
    try:
        for name, run in figures:
            if not run_figure(name, run, results):
                status = 1  # fails the run, so that CI's smoke pass notices rot
        summary(results, args.quick)
    except Watchdog as e:
        print(f"\nbenchmark aborted: {e}; partial results above.")
        results["aborted"] = str(e)
        status = 2
    finally:
        finish(kids, scratch, started, args.json,
               lambda: {"script": "drain", "mode": "quick" if args.quick else "full", "machine": machine(),
                        "tables": TABLES, "results": results}, meta=results["meta"])
    return status


if __name__ == "__main__":
    sys.exit(main())
