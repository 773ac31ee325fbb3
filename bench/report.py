#!/usr/bin/env python3
"""Writes BENCHMARKS.md (and the scan-time plot) from the JSON of bench/core.py, bench/drain.py and
bench/admin.py.

    python3 bench/report.py --core core.json --drain drain.json [--admin admin.json] \
        --out BENCHMARKS.md --plot bench/scan-time.png

Every number in the report is one the scripts printed in that run; this only lays the tables out.
The plot needs matplotlib (bench/run.sh installs it into a virtual environment of the bench's
own); without it the report is written and says the plot is missing. The admin results are
optional: without them (no file, or an empty one) the report says so and has the rest.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

TARGETS = [
    ("Static binary", "<= 1.2 MB"),
    ("Peak RSS (supervising, and scanning up to 100k sockets)", "<= 1.5 MiB"),
    ("Readiness -> exec", "p50 <= 20 ms, p99 <= 60 ms at <= 20 probes/s"),
    ("Signal forwarding", "<= 1.2x tini"),
    ("Socket scan at 18k sockets", ">= 8x faster than `netstat -plunt`, >= 2x faster than `ss -tan`"),
    ("Idle wakeups", "0 per second"),
    ("Drain detection", "<= 150 ms"),
    ("Drain detection through the sidecar view (Envoy admin `/clusters`, gRPC)", "<= 150 ms"),
]


def figure_key(table):
    """Sort key: figure number, then its letter, then the order printed; summaries last."""
    m = re.match(r"Figure (\d+)([a-z]?)\.", table["title"])
    return (int(m.group(1)), m.group(2)) if m else (99, "")


def cell(text):
    text = str(text)
    indent = len(text) - len(text.lstrip(" "))
    # Markdown drops leading spaces; an indented row (a sub-row of the one above) keeps its look.
    return "&emsp;" * (indent // 2) + text.lstrip(" ").replace("|", "\\|")


def markdown_table(table):
    headers = table["headers"]
    lines = [f"**{cell(table['title'])}**", "",
             "| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in table["rows"]:
        if len(row) == 2 and len(headers) > 2:  # a name and a message: the message spans the rest
            row = [row[0], row[1]] + [""] * (len(headers) - 2)
        extra = row[len(headers):]
        row = row[:len(headers)] + [""] * (len(headers) - len(row))
        if extra:
            row[-1] = (row[-1] + " " + " ".join(extra)).strip()
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    bullets = []
    for note in table["notes"]:
        if note.startswith("  ") and bullets:  # a note's continuation line
            bullets[-1] += " " + note.strip()
        elif note.strip():
            bullets.append(f"- {note.strip()}")
    if bullets:
        lines += [""] + bullets
    return "\n".join(lines)


def scan_series(drain):
    """tool -> [(sockets, min, median, max)], from the scan figure at every size."""
    series = {}
    for run in drain.get("results", {}).get("scan", {}).values():
        sockets = run["farm"]["sockets"]
        for tool, t in run["tools"].items():
            if "median_ms" in t:
                series.setdefault(tool, []).append((sockets, t["min_ms"], t["median_ms"], t["max_ms"]))
    return {tool: sorted(points) for tool, points in series.items()}


def plot(series, path, subtitle):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (bench/run.sh installs it): no plot"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for tool, points in series.items():
        xs = [p[0] for p in points]
        med = [p[2] for p in points]
        low = [p[2] - p[1] for p in points]
        high = [p[3] - p[2] for p in points]
        ax.errorbar(xs, med, yerr=[low, high], marker="o", capsize=3, label=tool,
                    linewidth=2.5 if tool == "meshwait drain" else 1.2)
    ax.set_xlabel("TCP sockets in the namespace")
    ax.set_ylabel("one scan, ms (median; bars: min to max)")
    ax.set_yscale("log")
    ax.set_title("Socket scan time against socket count\n" + subtitle, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return None


def load_optional(path):
    """A script's JSON, or (None, why not) when it is missing, empty or unreadable."""
    if not path:
        return None, "not given (--admin)"
    try:
        text = Path(path).read_text()
    except OSError as e:
        return None, f"{path} unreadable: {e.strerror}"
    if not text.strip():
        return None, f"{path} is empty (the script did not finish)"
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"{path} is not JSON: {e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--core", required=True)
    ap.add_argument("--drain", required=True)
    ap.add_argument("--admin", help="bench/admin.py's JSON (optional)")
    ap.add_argument("--out", required=True, help="the Markdown file to write")
    ap.add_argument("--plot", required=True, help="the PNG to write")
    ap.add_argument("--command", default="bash bench/run.sh", help="the command named in the report")
    args = ap.parse_args()
    core = json.loads(Path(args.core).read_text())
    drain = json.loads(Path(args.drain).read_text())
    admin, admin_missing = load_optional(args.admin)
    m = core["machine"]
    quick = "quick" in (core.get("mode"), drain.get("mode"), (admin or {}).get("mode"))

    all_tables = core["tables"] + drain["tables"] + (admin["tables"] if admin else [])
    tables = sorted((t for t in all_tables if t["title"].startswith("Figure")), key=figure_key)
    summaries = [t for t in all_tables if t["title"].startswith("Summary")]
    series = scan_series(drain)
    subtitle = f"{m['cpus']} CPUs, Linux {m['kernel']}, {m['date']}"
    plot_error = plot(series, args.plot, subtitle) if series else "no scan figure in this run"
    plot_rel = os.path.relpath(args.plot, Path(args.out).resolve().parent)

    out = ["# Benchmarks", ""]
    if quick:
        out += ["> **Smoke run** (`--quick`): one or a few samples per figure, to prove the suite",
                "> works. These are not measurements.", ""]
    out += [
        "meshwait measured beside the tools a platform team would otherwise use, in the same run on",
        "the same machine, interleaved so that noise hits every tool alike. Ratios compare within",
        "the run; absolute times move with the machine's load.",
        "",
        f"- **Command**: `{args.command}` (`bench/core.py`, then `bench/drain.py` and `bench/admin.py` as root,"
        " then this report)",
        f"- **Date**: {m['date']}",
        f"- **Machine**: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, Linux {m['kernel']},"
        f" Python {m['python']}",
        "- **Versions**: " + "; ".join(f"{k}: {v}" for k, v in core.get("versions", {}).items()),
        "",
        "## Targets",
        "",
        "| What | Target |",
        "|---|---|",
        *[f"| {cell(a)} | {cell(b)} |" for a, b in TARGETS],
        "",
        "The verdicts of this run:",
        "",
    ]
    if admin_missing:
        out += [f"(No results from `bench/admin.py`, the sidecar-view figures 9-11: {admin_missing}.)", ""]
    for t in summaries:
        out += [markdown_table(t), ""]
    out += ["## Socket scan time against socket count", ""]
    if plot_error:
        out += [f"(No plot: {plot_error}.)", ""]
    else:
        out += [f"![Scan time against socket count]({plot_rel})", ""]
    out += ["## Figures", "",
            "1 size, 2 peak RSS supervising `sleep`, 2b peak RSS while scanning sockets, 3 start-up",
            "overhead, 4 readiness to exec, 5 signal forwarding, 5b a burst of real-time signals, 6 socket scan at about 1k, 10k and 18k",
            "sockets, 7 idle wakeups, 8 drain detection, 9 the cost of Envoy's admin `/clusters` at 100,",
            "1,000 and 5,000 clusters, 10 peak RSS while reading it, 11 drain detection through the sidecar",
            "view (gRPC through Envoy), 11b the same with Envoy holding 5,000 clusters. The main measure of",
            "each figure is given as",
            "min / median (or p50) / max over the repeated runs; secondary columns may be medians",
            "only. A row that could not be measured says why. Ratio columns name their direction:",
            "`meshwait / this` is below 1 where meshwait is smaller or faster, `x meshwait` above 1.", ""]
    for t in tables:
        out += [markdown_table(t), ""]
    Path(args.out).write_text("\n".join(out).rstrip() + "\n")
    print(f"wrote {args.out}" + (f" and {args.plot}" if not plot_error else f" (no plot: {plot_error})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
