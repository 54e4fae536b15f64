"""Quantiles of Prometheus histograms in a `/metrics` scrape, as far as their buckets tell.

    python3 benches/histogram.py METRICS_FILE NAME...     (prints {NAME: {count, p50/p99/max_at_most_s}} as JSON)

Each quantile is the upper bound of the bucket holding it: a histogram says no finer. Used by the bench scripts.
"""
import json
import re
import sys


def bounds(text, name):
    """How many values histogram `name` holds, and the bucket bound (seconds) of its p50, p99 and maximum."""
    buckets = sorted((float("inf") if le == "+Inf" else float(le), float(n))
                     for le, n in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M))
    count = buckets[-1][1] if buckets else 0.0

    def at(q):
        return next((le for le, n in buckets if n >= q * count), None) if count else None

    return {"count": count, "p50_at_most_s": at(0.5), "p99_at_most_s": at(0.99), "max_at_most_s": at(1.0)}


if __name__ == "__main__":
    text = open(sys.argv[1]).read()
    print(json.dumps({name: bounds(text, name) for name in sys.argv[2:]}))
