"""`make demo`'s launcher as a child of a test: start it on free ports, read its output, find its processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from deployments.local import PROJECT_ROOT
from deployments.local import free_port
from tests.support.worker import wait_for


class Output:
    """Collects a child's output lines on a thread, so reading never blocks the test."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def close(self, process: subprocess.Popen[str]) -> None:
        """Wait for the last line and close the pipe."""
        self._thread.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()

    def value(self, prefix: str) -> str:
        """The rest of the first line that starts with ``prefix``."""
        return next(line[len(prefix) :] for line in self.lines if line.startswith(prefix))


@dataclass
class Demo:
    """A running demo launcher, its ports and URLs, and what it printed."""

    process: subprocess.Popen[str]
    output: Output
    instance: Path
    ports: dict[str, int]
    exit_code: int | None = field(default=None)

    @property
    def portal(self) -> str:
        """The portal's URL (moved to a free port)."""
        return f"http://127.0.0.1:{self.ports['portal']}"

    @property
    def sandbox(self) -> str:
        """The sandbox's URL (moved to a free port)."""
        return f"http://127.0.0.1:{self.ports['sandbox']}"

    @property
    def prefect_api(self) -> str:
        """The Prefect server's API URL (moved to a free port)."""
        return f"http://127.0.0.1:{self.ports['prefect']}/api"

    def stop(self, signum: int, *, timeout_s: float = 120) -> int:
        """Send ``signum`` (Ctrl-C or a process manager's SIGTERM) and wait for the launcher to end."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.exit_code = self.process.wait(timeout=timeout_s)
        self.output.close(self.process)
        return self.exit_code


@contextmanager
def running_demo(instance: Path, *, speed: float, **settings: str) -> Iterator[Demo]:
    """Start ``python -m deployments.demo`` on free ports (moved through the README's variables).

    ``settings``: more APP_* variables for the demo (they win over its defaults).
    """
    ports = {name: free_port() for name in ("portal", "sandbox", "prefect")}
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    env.update(
        APP_INSTANCE_DIR=str(instance),
        APP_PUBLIC_URL=f"http://127.0.0.1:{ports['portal']}",
        APP_SANDBOX_URL=f"http://127.0.0.1:{ports['sandbox']}",
        APP_PREFECT_API_URL=f"http://127.0.0.1:{ports['prefect']}/api",
        **settings,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.demo", "--sandbox-speed", str(speed)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = Demo(process, Output(process), instance, ports)
    try:
        wait_for(
            lambda: "Press Ctrl-C to stop." in demo.output.lines or process.poll() is not None,
            timeout_s=240,
            what="the demo to start",
        )
        assert process.poll() is None, "\n".join(demo.output.lines)
        yield demo
    finally:
        if demo.exit_code is None:
            demo.stop(signal.SIGINT)


def demo_processes(instance: Path) -> list[int]:
    """Pids of live processes started for this demo (they all carry its instance folder)."""
    marker = f"APP_INSTANCE_DIR={instance}".encode()
    return [pid for pid in _live_pids() if marker in _environ(pid)]


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> command line."""
    children: dict[int, list[int]] = {}
    for pid in _live_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(pid)
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = command_line(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    """The process's command line, or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone: it only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def survivors(pids: list[int], *, within_s: float) -> list[int]:
    """The ``pids`` still alive after waiting up to ``within_s`` for them to end."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return []
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def _live_pids() -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and int(p.name) != os.getpid()
    ]


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []  # exited meanwhile, or not ours to read
