"""Latency histograms that processes can ship as JSON and merge, and the results table."""
import math
from collections import Counter

RESOLUTION_MS = 0.1
CEILING_MS = 60_000
BINS_PER_MS = 1 / RESOLUTION_MS
LAST_BIN = int(CEILING_MS * BINS_PER_MS)


class Histogram:
    """Counts of latencies in 0.1 ms bins up to a minute, kept sparse."""

    def __init__(self, bins=None):
        self.bins = Counter({int(k): v for k, v in (bins or {}).items()})

    def add(self, latency_ms):
        self.add_all([latency_ms])

    def add_all(self, latencies_ms):
        """Counts latencies (any iterable), in C (map and Counter) rather than one by one in
        Python: a dashboard client process counts ~100,000 a second. Returns how many."""
        indexes = list(map(int, map(BINS_PER_MS.__mul__, latencies_ms)))
        if not indexes:
            return 0
        self.bins.update(indexes)
        if min(indexes) < 0 or max(indexes) > LAST_BIN:
            for index in [index for index in self.bins if index < 0 or index > LAST_BIN]:
                self.bins[min(max(0, index), LAST_BIN)] += self.bins.pop(index)
        return len(indexes)

    def merge(self, other):
        self.bins.update(other.bins)
        return self

    @property
    def count(self):
        return sum(self.bins.values())

    def percentile(self, fraction):
        """The latency (ms) below which `fraction` of the samples fall, or None if empty."""
        total = self.count
        if not total:
            return None
        wanted = math.ceil(total * fraction)
        seen = 0
        for index in sorted(self.bins):
            seen += self.bins[index]
            if seen >= wanted:
                return round((index + 1) * RESOLUTION_MS, 1)

    def summary(self):
        return {
            "p50_ms": self.percentile(0.50),
            "p95_ms": self.percentile(0.95),
            "p99_ms": self.percentile(0.99),
            "max_ms": self.percentile(1.0),
            "samples": self.count,
        }


def table(rows, columns):
    """A plain-text table of dicts, columns as (key, heading)."""
    cells = [[heading for _, heading in columns]] + [[format_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
