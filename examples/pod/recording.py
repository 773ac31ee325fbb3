"""What happened in one pod, and when: the recording that the scenario checks read and that
timeline.py draws.

Every entry is on one clock, seconds since the pod's first container started:

    {"t": 1.802, "lane": "app", "event": "gate-pass", "text": "gate passes (36 probes)", ...}

and a span (the gate waiting, SIGTERM held, a preStop hook running, a request in flight) has
"until" too. The driver (kubelet.py) marks what it does as it does it: container start and exit,
the pod's deletion, preStop start and end, SIGTERM and SIGKILL sent. The rest is read from the
containers' logs once the run is over: meshwait's JSON lines (MESHWAIT_LOG_FORMAT=json), app.py's
and agent.py's stamped lines; and the client's own start and end (peers.py). All of them stamp
with the wall clock, the one clock that the driver, the containers and the clients (other
namespaces of one machine) read alike and that meshwait's log lines carry; only a step of that
clock during a run could skew a recording.
"""

import datetime
import json
import re
import signal
import threading
import time

# The lanes in drawing order; a recording holds only those that saw something.
LANES = ("kubelet", "proxy", "app", "client")


def now():
    return time.time()


def wall_of(stamp):
    """Seconds since the epoch of an RFC 3339 time as meshwait writes it (UTC, "Z")."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def exit_text(code):
    """A container's end as the driver sees it: unshare exits with its PID 1's code, or dies of
    the same signal."""
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


class Recording:
    def __init__(self, title, name=None):
        self.title = title
        # The file name under --timeline; runs without one are recorded for their checks only.
        self.name = name
        self.caption = None
        self.checks = []
        self._marks = []
        self._lock = threading.Lock()
        self._logs = []
        self._clients = []
        self._closed = False
        self._frozen = None

    # -- filled while the pod runs -------------------------------------------------------------

    def mark(self, lane, event, text, **data):
        """Something the driver did or saw, now. Ignored once the recording is frozen: the
        harness's own teardown is not part of the run."""
        wall = now()
        with self._lock:
            if not self._closed:
                self._marks.append(dict(wall=wall, lane=lane, event=event, text=text, **data))

    def log(self, lane, path):
        """A container log to read when the run is over."""
        self._logs.append((lane, path))

    def client(self, result, what):
        """A client's call (peers.py's JSON line), from its own start to its end."""
        self._clients.append((result, what))

    # -- read by the checks and by timeline.py -------------------------------------------------

    def freeze(self):
        """Reads the logs and fixes the recording; later calls return the same entries."""
        with self._lock:
            self._closed = True
            if self._frozen is None:
                self._frozen = self._entries()
        return self

    def _entries(self):
        entries = list(self._marks)
        for lane, path in self._logs:
            try:
                with open(path, errors="replace") as f:
                    entries += read_log(lane, f)
            except FileNotFoundError:
                pass
        for result, what in self._clients:
            entries += client_entries(result, what)
        starts = [e["wall"] for e in entries if e["event"] == "start"]
        self.origin = min(starts) if starts else min((e["wall"] for e in entries), default=now())
        self.end = round(max([now()] + [e.get("until_wall", e["wall"]) for e in entries])
                         - self.origin, 3)
        for e in entries:
            e["t"] = round(e.pop("wall") - self.origin, 3)
            if "until_wall" in e:
                e["until"] = round(e.pop("until_wall") - self.origin, 3)
        entries += derived_spans(entries, self.end)
        entries.sort(key=lambda e: (e["t"], LANES.index(e["lane"])
                                    if e["lane"] in LANES else len(LANES)))
        first = ("t", "until", "lane", "event", "text")
        return [{**{k: e[k] for k in first if k in e},
                 **{k: v for k, v in e.items() if k not in first}} for e in entries]

    @property
    def entries(self):
        return self.freeze()._frozen

    def all(self, event, lane=None):
        return [e for e in self.entries if e["event"] == event and lane in (None, e["lane"])]

    def first(self, event, lane=None):
        found = self.all(event, lane)
        return found[0] if found else None

    def since(self, event, base="delete"):
        """Seconds from the first `base` to the first `event`; None if either is missing."""
        a, b = self.first(base), self.first(event)
        return None if a is None or b is None else round(b["t"] - a["t"], 3)

    def gone(self):
        """When the last container exited, None if one never did."""
        exits = self.all("exit")
        if not exits or len(exits) < len(self.all("start")):
            return None
        return max(e["t"] for e in exits)

    def killed(self):
        return sorted(e["lane"] for e in self.all("sigkill"))

    def as_json(self):
        lanes = [lane for lane in LANES if any(e["lane"] == lane for e in self.entries)]
        return {"name": self.name, "title": self.title, "caption": self.caption,
                "checks": [{"check": name, "ok": ok} for name, ok in self.checks],
                "end": self.end, "lanes": lanes, "events": self.entries}

    def save(self, path):
        """One event a line: a recording reads, and compares with the last one, line by line."""
        doc = self.as_json()
        events = doc.pop("events")
        with open(path, "w") as f:
            head = json.dumps(doc, indent=1)
            f.write(head[:-2] + ',\n "events": [\n')
            f.write(",\n".join("  " + json.dumps(e) for e in events))
            f.write("\n ]\n}\n")


# What each line of a container's log means, by who wrote it.

def read_log(lane, lines):
    entries = []
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("{"):
            entry = meshwait_entry(lane, line)
        elif line.startswith("app: "):
            entry = stamped_entry(lane, line, APP_LINES)
        elif line.startswith("agent: "):
            entry = stamped_entry(lane, line, AGENT_LINES)
        else:
            entry = None
        if entry:
            entries.append(entry)
    return entries


def first_call(match):
    ok, what = match[1] == "ok", match[2]
    if ok:
        short = f"first call {what.split()[0]}" + (" via Envoy" if "via envoy" in what else "")
    elif "Connection refused" in what:
        short = "first call refused (ECONNREFUSED)"
    else:
        short = f"first call failed: {what[:40]}"
    return "first-call", short, {"ok": ok}


def answering(match):
    return "answer", f"app answers {match[1]}", {"status": int(match[1])}


# (the whole message as app.py or agent.py writes it, event, label or a function of the match
# giving (event, label, data)); the first that matches. Whole lines: other programs in the pod
# (streams_app.py) write "app: " lines too, with other words.
APP_LINES = [
    (r"first call (ok|FAILED): (.*)", first_call),
    (r"serving on :\d+", "serving", "serving"),
    (r"request \S+: calling upstream", "call-upstream", "calls upstream"),
    (r"request \S+: answering (\d{3})", answering),
    (r"SIGTERM: finishing requests in flight", "app-sigterm", "app gets SIGTERM"),
]
AGENT_LINES = [
    (r"Envoy is ready", "envoy-ready", "Envoy ready"),
    (r"SIG\w+: draining listeners for .*", "proxy-drain", "drains listeners"),
    (r"stopping Envoy", "envoy-stop", "Envoy stopped"),
]


def stamped_entry(lane, line, table):
    """A line "WHO: WALL MESSAGE", as app.py and agent.py write them."""
    try:
        _, wall, msg = line.split(" ", 2)
        wall = float(wall)
    except ValueError:
        return None
    for pattern, *meaning in table:
        match = re.fullmatch(pattern, msg)
        if match:
            if callable(meaning[0]):
                event, text, data = meaning[0](match)
            else:
                (event, text), data = meaning, {}
            return dict(wall=wall, lane=lane, event=event, text=text, detail=msg, **data)
    return None


def meshwait_entry(lane, line):
    """One of meshwait's JSON lines, if it is one the pictures and checks use."""
    try:
        doc = json.loads(line)
        wall = wall_of(doc["time"])
        msg = doc["message"]
    except (ValueError, KeyError, TypeError):
        return None
    entry = dict(wall=wall, lane=lane, detail=msg)
    if msg.startswith("waiting for the proxy: "):
        answer = msg.split(": ", 1)[1]
        short = f"HTTP {doc['status']}" if "status" in doc else answer.split(" (")[0]
        # Logged when the answer changes (and every few seconds): what the probes got from here.
        entry.update(event="gate-answer", text=f"probes: {short}", attempt=doc.get("attempt"))
    elif msg.startswith("proxy ready"):
        entry.update(event="gate-pass", text=f"gate passes ({doc.get('probes')} probes)",
                     probes=doc.get("probes"), elapsed_ms=doc.get("elapsed_ms"))
    elif msg.startswith("received ") and "holding it" in msg:
        entry.update(event="hold", text=f"meshwait holds {doc.get('signal', 'SIGTERM')}")
    elif "passing SIG" in msg:
        timed_out = msg.startswith("drain timeout")
        # The release after the shutdown delay alone (no drain) says nothing of how long.
        held = doc.get("held_ms")
        entry.update(event="pass-on",
                     text="passes it on" + (f" after {held / 1000:.1f} s" if held is not None
                                            else "")
                          + (" (drain timeout)" if timed_out else ""),
                     held_ms=held, timed_out=timed_out)
    else:
        return None
    return entry


def client_entries(result, what):
    """The client's call as a span, and how it ended: answered (2xx), or cut (an error, or a 5xx
    from Envoy standing in for the app)."""
    if "sent_at" not in result or "ended_at" not in result:
        return []
    status = result.get("status")
    done = status is not None and 200 <= status < 300
    if done:
        how = f"{status} after {result['elapsed_s']:.1f} s"
    elif status is not None:
        how = f"cut: {status} from Envoy"
    else:
        how = "cut: " + result.get("error", "?").split(":")[0]
    end = dict(wall=result["ended_at"], lane="client",
               event="request-done" if done else "request-cut", text=how,
               detail=result.get("body") or result.get("error"), status=status,
               elapsed_s=result["elapsed_s"])
    span = dict(wall=result["sent_at"], until_wall=result["ended_at"], lane="client",
                event="request", text=what, ok=done)
    return [span, end]


def derived_spans(entries, end):
    """The spans read off pairs of events: the container's life, the sidecar before Envoy is
    ready, meshwait's gate and hold, the preStop hook, the sidecar's drain."""

    def first(event, lane, after=None):
        return next((e for e in entries if e["event"] == event and e["lane"] == lane
                     and (after is None or e["t"] >= after)), None)

    spans = []

    def span(lane, event, begin, until, text, **data):
        if begin is not None:
            spans.append(dict(t=begin, until=end if until is None else until, lane=lane,
                              event=event, text=text, **data))

    for s in (e for e in entries if e["event"] == "start"):
        ended = first("exit", s["lane"])
        span(s["lane"], "alive", s["t"], ended and ended["t"], s["lane"])
    proxy = first("start", "proxy")
    if proxy:
        ready = first("envoy-ready", "proxy")
        span("proxy", "not-ready", proxy["t"], ready and ready["t"], "Envoy not ready")
    app = first("start", "app")
    passed = first("gate-pass", "app")
    if app and (passed or first("gate-answer", "app")):
        span("app", "gate", app["t"], passed and passed["t"], "meshwait's gate")
    for hold in (e for e in entries if e["event"] == "hold"):
        released = first("pass-on", hold["lane"], hold["t"])
        span(hold["lane"], "held", hold["t"], released and released["t"], "SIGTERM held")
    for hook in (e for e in entries if e["event"] == "prestop-start"):
        ended = first("prestop-end", hook["lane"], hook["t"])
        span(hook["lane"], "prestop", hook["t"], ended and ended["t"], hook["text"])
    drain = first("proxy-drain", "proxy")
    if drain:
        stop = first("envoy-stop", "proxy", drain["t"])
        span("proxy", "draining", drain["t"], stop and stop["t"], "draining")
    return spans
