"""Latency histograms that processes can ship as JSON and merge, and the results table."""
import math

RESOLUTION_MS = 0.1
CEILING_MS = 60_000


class Histogram:
    """Counts of latencies in 0.1 ms bins up to a minute, kept sparse."""

    def __init__(self, bins=None):
        self.bins = {int(k): v for k, v in (bins or {}).items()}

    def add(self, latency_ms):
        index = min(max(0, int(latency_ms / RESOLUTION_MS)), int(CEILING_MS / RESOLUTION_MS))
        self.bins[index] = self.bins.get(index, 0) + 1

    def merge(self, other):
        for index, count in other.bins.items():
            self.bins[index] = self.bins.get(index, 0) + count
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
