"""Draws the races from the simulated pod's recordings (recording.py): one SVG per scenario, the
run without meshwait above the run with it, on one time axis.

    sudo python3 examples/pod/scenarios.py --meshwait target/release/meshwait --only 1,2 \\
        --timeline docs/img

runs scenarios 1 and 2, writes each run's recording (DIR/startup-race-with.json, ...) and draws
DIR/startup-race.svg and DIR/shutdown-race.svg from them. To draw again from recordings already
written (no root, no pod):

    python3 examples/pod/timeline.py docs/img

Standard library only; the SVG is plain SVG 1.1 with no fonts, scripts or links of its own.
"""

import argparse
import json
import os
import sys
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

# picture: (title, the recordings drawn, top to bottom, the events marked but not labelled)
PICTURES = {
    "startup-race": ("The start-up race: the app calls out at its first instruction",
                     ["startup-race-without", "startup-race-with"], set()),
    # The start-up is the other picture's; here it would only crowd the lanes.
    "shutdown-race": ("The shutdown race: an 8 s request in flight when the pod is deleted",
                      ["shutdown-race-without", "shutdown-race-with"],
                      {"gate-answer", "first-call"}),
}

WIDTH = 900
LEFT = 70  # lane names
RIGHT = 24
FONT = "Helvetica, Arial, sans-serif"
LABEL_SIZE = 11
# Wider than most sans-serif faces' average, so that the estimate errs on the side of room.
CHAR_WIDTH = 0.6
ROW = 13  # one row of labels
BAR = 12  # a span's bar
LANE_GAP = 8

LANE_NAMES = {"kubelet": "kubelet", "proxy": "sidecar", "app": "app", "client": "client"}

RED = "#d1342f"
GREEN = "#23944a"
INK = "#222"
MUTED = "#666"

# span event: (fill, text colour, legend)
SPANS = {
    "not-ready": ("#f6dcae", INK, "Envoy not ready"),
    "gate": ("#f2b632", INK, "meshwait's gate: probing"),
    "held": ("#3f7fcf", "#fff", "SIGTERM held by meshwait"),
    "prestop": ("#8e63c9", "#fff", "preStop hook running"),
    "draining": ("#c8a27a", INK, "sidecar draining"),
}

# point event: (label, colour, marker); label None: the recording's text, False: no label.
POINTS = {
    "start": (False, MUTED, "tick"),
    "exit": (None, INK, "bar"),
    "first-call": (None, None, "dot"),
    "gate-answer": (None, "#9a6a00", "tick"),
    "gate-pass": (None, GREEN, "dot"),
    "answer": (None, None, "dot"),
    "pass-on": ("SIGTERM passed on", "#3f7fcf", "dot"),
    "sigterm": ("SIGTERM", INK, "dot"),
    "sigkill": ("SIGKILL", RED, "cross"),
    "envoy-ready": (None, GREEN, "dot"),
    "envoy-stop": (None, RED, "dot"),
    "delete": (None, INK, "diamond"),
    "request-done": (None, GREEN, "dot"),
    "request-cut": (None, RED, "cross"),
}


REDRAW = ("Drawn by examples/pod/timeline.py from the recordings of one run of `sudo python3 "
          "examples/pod/scenarios.py --meshwait target/release/meshwait --only 1,2 --timeline "
          "docs/img`.")

# What the race is about, labelled in bold.
OUTCOMES = {"first-call", "request-done", "request-cut"}


def text_width(text, size=LABEL_SIZE):
    return len(text) * size * CHAR_WIDTH


def nice_step(span):
    """A tick step giving 6 to 15 ticks over `span` seconds."""
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10):
        if span / step <= 15:
            return step
    return 20


class Svg:
    def __init__(self):
        self.parts = []

    def add(self, tag, text=None, **attrs):
        attributes = "".join(f" {k.rstrip('_').replace('_', '-')}={quoteattr(str(v))}"
                             for k, v in attrs.items() if v is not None)
        if text is None:
            self.parts.append(f"<{tag}{attributes}/>")
        else:
            self.parts.append(f"<{tag}{attributes}>{escape(text)}</{tag}>")

    def text(self, x, y, text, size=LABEL_SIZE, fill=INK, anchor="start", weight=None):
        self.add("text", text, x=f"{x:.1f}", y=f"{y:.1f}", font_size=size, fill=fill,
                 text_anchor=anchor, font_weight=weight)

    def line(self, x1, y1, x2, y2, stroke=INK, width=1, dash=None):
        self.add("line", x1=f"{x1:.1f}", y1=f"{y1:.1f}", x2=f"{x2:.1f}", y2=f"{y2:.1f}",
                 stroke=stroke, stroke_width=width, stroke_dasharray=dash)

    def rect(self, x, y, w, h, fill, rx=0, stroke=None):
        self.add("rect", x=f"{x:.1f}", y=f"{y:.1f}", width=f"{max(w, 1):.1f}", height=f"{h:.1f}",
                 fill=fill, rx=rx, stroke=stroke)

    def marker(self, kind, x, y, colour):
        if kind == "dot":
            self.add("circle", cx=f"{x:.1f}", cy=f"{y:.1f}", r=4, fill=colour, stroke="#fff",
                     stroke_width=1)
        elif kind == "cross":
            for d in (-1, 1):
                self.line(x - 5, y - 5 * d, x + 5, y + 5 * d, stroke=colour, width=2.5)
        elif kind == "diamond":
            self.add("polygon", points=f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} "
                                       f"{x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}", fill=colour)
        elif kind == "bar":
            self.line(x, y - 7, x, y + 7, stroke=colour, width=2.5)
        else:
            self.line(x, y - 4, x, y + 4, stroke=colour, width=1.5)

    def document(self, height, title, description):
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" '
                f'height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
                f'font-family={quoteattr(FONT)}>')
        # For screen readers, and for whoever opens the file wondering where it came from.
        about = [f"<title>{escape(title)}</title>", f"<desc>{escape(description)}</desc>"]
        # A background of its own: the picture stays legible on a dark page.
        background = f'<rect width="{WIDTH}" height="{height:.0f}" fill="#fff"/>'
        return "\n".join([head, *about, background, *self.parts, "</svg>"]) + "\n"


def colour_of(entry, default):
    if default is not None:
        return default
    if entry["event"] == "first-call":
        return GREEN if entry.get("ok") else RED
    if entry["event"] == "answer":
        return GREEN if 200 <= (entry.get("status") or 0) < 300 else RED
    return INK


def place(labels, left, right):
    """Puts each label (in the order of their points) in the row nearest its lane where it
    overlaps no label placed before it, and where the line from its point to it crosses none:
    rows above the bar first, then below; the label starts at its point, or ends there. Returns
    the number of rows (above, below)."""
    rows = {"above": [], "below": []}

    def free(side, row, a, b):
        return row >= len(rows[side]) or all(b + 6 <= x1 or a >= x2 + 6
                                              for x1, x2 in rows[side][row])

    def take(side, row, a, b):
        while len(rows[side]) <= row:
            rows[side].append([])
        rows[side][row].append((a, b))

    for label in sorted(labels, key=lambda l: l["x"]):
        x, w = label["x"], text_width(label["text"])
        # Starting at its point, else ending there; within the plot.
        spans = [(a, a + w) for a in (x - 2, x + 2 - w) if left <= a and a + w <= right]
        spans = spans or [(max(left, min(x - 2, right - w)), max(left, min(x - 2, right - w)) + w)]
        chosen = next(((side, row, a, b) for row in range(8) for side in ("above", "below")
                       if all(free(side, q, x - 2, x + 2) for q in range(row))
                       for a, b in spans if free(side, row, a, b)), None)
        if chosen is None:
            # Crowded beyond reason: stack it above everything rather than lose it.
            a, b = spans[0]
            chosen = ("above", len(rows["above"]), a, b)
        side, row, a, b = chosen
        take(side, row, a, b)
        for q in range(row):
            take(side, q, x - 2, x + 2)  # the leader's way through the rows nearer the bar
        label.update(side=side, row=row, start=a, end=b)
    return len(rows["above"]), len(rows["below"])


def lane_layout(recording, x_of, quiet):
    """Per lane: (bars, points, labels, rows above, rows below)."""
    lanes = {}
    right = WIDTH - RIGHT
    for lane in recording["lanes"]:
        bars, points, labels = [], [], []
        for e in (e for e in recording["events"] if e["lane"] == lane):
            x = x_of(e["t"])
            if "until" in e:
                x2 = x_of(e["until"])
                if e["event"] == "alive":
                    bars.append(("alive", x, x2, None, None))
                    continue
                if e["event"] == "request":
                    fill, ink = (GREEN if e.get("ok") else RED), "#fff"
                else:
                    fill, ink, _ = SPANS.get(e["event"], ("#bbb", INK, ""))
                bars.append((e["event"], x, x2, fill, (short_span_text(e), ink)))
                continue
            if e["event"] not in POINTS:
                continue
            label, colour, kind = POINTS[e["event"]]
            colour = colour_of(e, colour)
            points.append((kind, x, colour))
            if label is not False and e["event"] not in quiet:
                labels.append(dict(x=x, text=label or e["text"], fill=colour,
                                   weight="bold" if e["event"] in OUTCOMES else None))
        marked = sorted(x for _, x, _ in points)
        bars = [(event, x1, x2, fill, inside and fit_inside(inside, x1, x2, marked))
                for event, x1, x2, fill, inside in bars]
        lanes[lane] = (bars, points, labels, *place(labels, LEFT, right))
    return lanes


def fit_inside(inside, x1, x2, marked):
    """(text, colour, where) for a span's name inside its bar: in the widest stretch between the
    points marked on it, if it fits there; None if not (the legend names it anyway)."""
    text, ink = inside
    edges = [x1] + [x for x in marked if x1 < x < x2] + [x2]
    a, b = max(zip(edges, edges[1:]), key=lambda gap: gap[1] - gap[0])
    if text_width(text, LABEL_SIZE - 1) + 10 > b - a:
        return None
    return text, ink, (a + b) / 2


def short_span_text(e):
    if e["event"] == "prestop":
        # "preStop: meshwait drain --until app-exit --timeout 25s": the command, not its options.
        return " ".join(e["text"].split()[:3])
    if e["event"] == "held":
        return f"SIGTERM held {e['until'] - e['t']:.1f} s"
    if e["event"] == "draining":
        return f"draining {e['until'] - e['t']:.0f} s"
    return e["text"]


def wrap(text, size, width):
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}".strip()
        if line and text_width(candidate, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def picture(title, recordings, quiet=frozenset()):
    """The SVG of `recordings` (top to bottom) on one time axis."""
    svg = Svg()
    end = max(r["end"] for r in recordings)
    step = nice_step(end)
    axis_end = step * (int(end / step + 0.999))
    scale = (WIDTH - RIGHT - LEFT) / axis_end

    def x_of(t):
        return LEFT + max(0.0, t) * scale

    y = 26
    svg.text(12, y, title, size=16, weight="bold")
    y += 18
    svg.text(12, y, "Seconds since the pod's first container started, from one run of the "
                    "simulated pod (examples/pod/scenarios.py).", size=11, fill=MUTED)
    y += 14
    for rec in recordings:
        y += 16
        failed = [c["check"] for c in rec.get("checks", []) if not c["ok"]]
        caption = rec.get("caption") or rec["title"]
        if failed:
            caption += " [checks FAILED: " + "; ".join(failed) + "]"
        for line in wrap(caption, 13, WIDTH - 24):
            y += 16
            svg.text(12, y, line, size=13, weight="bold", fill=RED if failed else INK)
        y += 8
        lanes = lane_layout(rec, x_of, quiet)
        top = y
        placed = []
        for lane in rec["lanes"]:
            bars, points, labels, above, below = lanes[lane]
            mid = y + above * ROW + BAR / 2 + 4
            placed.append((lane, mid, bars, points, labels))
            y = mid + BAR / 2 + below * ROW + LANE_GAP
        bottom = y
        t = 0.0
        while t <= axis_end + 1e-9:
            svg.line(x_of(t), top, x_of(t), bottom, stroke="#ececec")
            svg.text(x_of(t), bottom + 12, f"{t:g}", size=10, fill=MUTED, anchor="middle")
            t += step
        svg.line(LEFT, bottom, WIDTH - RIGHT, bottom, stroke="#bbb")
        svg.text(LEFT - 10, bottom + 12, "seconds", size=10, fill=MUTED, anchor="end")
        deleted = next((e for e in rec["events"] if e["event"] == "delete"), None)
        if deleted:
            svg.line(x_of(deleted["t"]), top, x_of(deleted["t"]), bottom, stroke="#888",
                     dash="4,3")
        for lane, mid, bars, points, labels in placed:
            svg.text(LEFT - 10, mid + 4, LANE_NAMES.get(lane, lane), size=12, anchor="end",
                     weight="bold")
            for event, x1, x2, fill, inside in bars:
                if event == "alive":
                    svg.rect(x1, mid - 2, x2 - x1, 4, "#cfd4da", rx=2)
                    continue
                svg.rect(x1, mid - BAR / 2, x2 - x1, BAR, fill, rx=2)
                if inside:
                    svg.text(inside[2], mid + 3.5, inside[0], size=LABEL_SIZE - 1,
                             fill=inside[1], anchor="middle")
            for kind, x, colour in points:
                svg.marker(kind, x, mid, colour)
            for label in labels:
                if label["side"] == "above":
                    base = mid - BAR / 2 - 3 - label["row"] * ROW
                    near, far = mid - BAR / 2, base + 2
                else:
                    base = mid + BAR / 2 + 10 + label["row"] * ROW
                    near, far = mid + BAR / 2, base - 9
                if label["row"]:
                    svg.line(label["x"], near, label["x"], far, stroke="#aaa", width=0.8)
                svg.text(label["start"], base, label["text"], fill=label["fill"],
                         weight=label["weight"])
        y = bottom + 30
    drawn = {e["event"] if e["event"] != "request" else "request-ok" if e.get("ok")
             else "request-cut" for r in recordings for e in r["events"]}
    y = legend(svg, y, drawn)
    description = " ".join(f"{r.get('caption') or r['title']}." for r in recordings)
    return svg.document(y + 10, title, f"{description} {REDRAW}")


def legend(svg, y, drawn):
    """The spans' colours, those of the spans drawn."""
    items = [(fill, text) for event, (fill, _, text) in SPANS.items() if event in drawn]
    if "request-ok" in drawn:
        items.append((GREEN, "request in flight, completed"))
    if "request-cut" in drawn:
        items.append((RED, "request in flight, cut"))
    x = 12
    for fill, text in items:
        w = 14 + 5 + text_width(text, 10) + 16
        if x + w > WIDTH - 12:
            x, y = 12, y + 16
        svg.rect(x, y - 9, 14, 10, fill, rx=2)
        svg.text(x + 19, y, text, size=10, fill=MUTED)
        x += w
    return y + 6


def draw(directory, out=None):
    """Draws every picture whose recordings are all in `directory`; returns the SVGs' paths."""
    written = []
    for name, (title, runs, quiet) in PICTURES.items():
        paths = [os.path.join(directory, f"{run}.json") for run in runs]
        if not all(os.path.exists(p) for p in paths):
            continue
        recordings = []
        for p in paths:
            with open(p) as f:
                recordings.append(json.load(f))
        doc = picture(title, recordings, quiet)
        # Text from the logs is escaped; this says so before a browser has to.
        ElementTree.fromstring(doc)
        os.makedirs(out or directory, exist_ok=True)
        path = os.path.join(out or directory, f"{name}.svg")
        with open(path, "w") as f:
            f.write(doc)
        written.append(path)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="the directory holding the recordings (scenarios.py --timeline)")
    ap.add_argument("--out", help="where to write the SVGs (default: beside the recordings)")
    args = ap.parse_args()
    written = draw(args.dir, args.out)
    if not written:
        sys.exit(f"timeline: no complete set of recordings in {args.dir}")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
