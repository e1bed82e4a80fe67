"""Purchase workers in their own processes, so a test can SIGKILL one after its buy call was sent.

``python -m tests.reliability.money_worker SETTINGS_JSON`` is a fork server: it imports the
purchase protocol once, points it at the test database and sandbox (without connecting: a forked
child must not share a pooled connection), prints ``ready``, and then forks one child per job
line (``{"provision_id": .., "names": [..]}``) read on stdin, answering ``child <pid>``. The child
calls ``buy_domains`` once and exits; the test kills it with SIGKILL whenever it likes, then asks
the server to reap it (``{"reap": pid}``): until then the pid stays a zombie, so a signal sent
to it can never reach a process the test did not start. Forking costs milliseconds where a
fresh interpreter costs seconds of imports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY = "ready"


def _say(line: str) -> None:
    # The fork server's protocol is line-based on stdout (the test reads it).
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _serve(settings_json: str) -> None:
    from core.settings import Settings
    from tasks import purchase
    from tasks import runtime

    runtime.use_settings(Settings(_env_file=None, **json.loads(settings_json)))
    runtime.use_prefect_limits(False)
    buy = getattr(purchase.buy_domains, "fn", purchase.buy_domains)
    _say(READY)
    for line in sys.stdin:
        job = json.loads(line)
        if "reap" in job:
            os.waitpid(int(job["reap"]), 0)
            _say("reaped")
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                buy(job["provision_id"], job["names"], {})
            except BaseException:  # noqa: BLE001 - the test judges the state, not this outcome
                code = 1
            os._exit(code)
        _say(f"child {pid}")


def alive(pid: int) -> bool:
    """Whether a worker child still runs (not yet exited; an unreaped child is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class KillableWorkers:
    """A fork server of purchase workers: ``start()`` one job, ``kill()`` it with SIGKILL."""

    def __init__(self, settings_fields: dict[str, Any]) -> None:
        self._fields = json.dumps(settings_fields, default=str)
        self._server: subprocess.Popen[str] | None = None
        self._children: set[int] = set()

    def warm(self) -> None:
        """Start the fork server (it imports in the background until the first job)."""
        if self._server is not None:
            return
        root = Path(__file__).resolve().parents[2]
        path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
        self._server = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.money_worker", self._fields],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert self._server.stdout is not None
        line = self._server.stdout.readline().strip()
        if line != READY:
            raise RuntimeError(f"purchase fork server did not start (said {line!r})")

    def _ask(self, job: dict[str, Any]) -> str:
        self.warm()
        assert self._server is not None and self._server.stdin and self._server.stdout
        self._server.stdin.write(json.dumps(job) + "\n")
        self._server.stdin.flush()
        return self._server.stdout.readline().strip()

    def start(self, provision_id: int, names: list[str]) -> int:
        """Run one purchase attempt in a new child process; return its pid."""
        pid = int(self._ask({"provision_id": provision_id, "names": names}).split()[1])
        self._children.add(pid)
        return pid

    def kill(self, pid: int) -> None:
        """SIGKILL one child: no exception handler, no cleanup, nothing recorded after this instant."""
        # Safe: the pid is our unreaped child until the server reaps it below.
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._ask({"reap": pid})
        self._children.discard(pid)

    def close(self) -> None:
        """Kill every child still running, then the fork server."""
        for pid in list(self._children):
            self.kill(pid)
        if self._server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._server.pid, signal.SIGKILL)
            self._server.wait(timeout=10)
            for pipe in (self._server.stdin, self._server.stdout):
                if pipe is not None:
                    pipe.close()
            self._server = None


if __name__ == "__main__":
    _serve(sys.argv[1])
