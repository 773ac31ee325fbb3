"""Helpers shared by the benchmark scripts: nearest-rank statistics, the process tree, and the
record of every table printed (the scripts' --json output, from which bench/report.py writes
BENCHMARKS.md)."""

import collections
import datetime
import math
import os
import platform
import sys
from pathlib import Path


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


# Every table a script prints, in order: {"title", "headers", "rows", "notes"}.
TABLES = []


def record_table(title, headers, rows, notes):
    TABLES.append({"title": title, "headers": [str(h) for h in headers],
                   "rows": [[str(c) for c in row] for row in rows], "notes": [str(n) for n in notes]})


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
