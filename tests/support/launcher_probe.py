"""A stand-in for the engine in launcher tests: report, optionally sleep, exit with a code."""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    """Print pid, a variable and the cwd; sleep ``argv[2]`` seconds; exit with ``argv[1]``."""
    code, sleep_s = int(sys.argv[1]), float(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    value, cwd = os.environ.get("PROBE_VALUE"), os.getcwd()
    sys.stdout.write(f"probe pid={os.getpid()} value={value} cwd={cwd}\n")
    sys.stdout.flush()
    time.sleep(sleep_s)
    sys.exit(code)


if __name__ == "__main__":
    main()
