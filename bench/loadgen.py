"""Reading load generators' output, for the bench scripts' summaries.

Imported by the Python the scripts run (`PYTHONPATH=bench`): one reading
of wrk's text for proxy.sh, replay.sh and tower.sh. A result that cannot
be read raises ValueError; each script decides whether that ends it or
is listed as a missing result.
"""

import re

# wrk prints latencies with a unit; these turn them into milliseconds.
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def latency_ms(text):
    """wrk's `1.23ms`, `850.00us`, `2.01s` as milliseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"cannot read the latency {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def wrk(text):
    """wrk's output (run with --latency): req/s, p50 and p99 in ms, the
    requests made, and errors (socket errors plus non-2xx/3xx answers)."""

    def find(pattern):
        m = re.search(pattern, text, re.M)
        if not m:
            raise ValueError(f"no {pattern!r} in wrk's output:\n{text}")
        return m.group(1)

    errors = 0
    m = re.search(r"^\s*Socket errors:(.*)$", text, re.M)
    if m:
        errors += sum(int(n) for n in re.findall(r"\d+", m.group(1)))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors += int(m.group(1)) if m else 0
    return {
        "rps": float(find(r"^Requests/sec:\s*([0-9.]+)")),
        "p50": latency_ms(find(r"^\s*50%\s+(\S+)")),
        "p99": latency_ms(find(r"^\s*99%\s+(\S+)")),
        "requests": int(find(r"^\s*(\d+) requests in")),
        "errors": errors,
    }
