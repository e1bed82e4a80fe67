"""A stand-in for a run that ignores SIGTERM (stuck in cleanup): report its pid, then sleep."""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    """Ignore SIGTERM, print the pid, sleep ``argv[1]`` seconds."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.write(f"probe pid={os.getpid()}\n")
    sys.stdout.flush()
    time.sleep(float(sys.argv[1]))


if __name__ == "__main__":
    main()
