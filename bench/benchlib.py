"""Helpers shared by the benchmark scripts: nearest-rank statistics and the process tree."""

import collections
import math
import os
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
