"""Measure how long `python -m sandbox` takes to answer its health check (target: < 3 s).

Usage: python bench/sandbox_startup.py [--runs N]. Ends with a `RESULT` line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from sandbox.testing import running_sandbox

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    """Start and stop the sandbox N times and report the startup wall times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        start = time.monotonic()
        with running_sandbox() as handle:
            handle.control("GET", "/health").raise_for_status()
            times.append(time.monotonic() - start)
    result = {
        "benchmark": "sandbox_startup",
        "machine": f"{platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}",
        "python": sys.version.split()[0],
        "runs": args.runs,
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sandbox_startup.json").write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.write(
        f"RESULT startup_median_s={result['median_s']} startup_max_s={result['max_s']}\n"
    )


if __name__ == "__main__":
    main()
