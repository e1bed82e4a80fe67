"""The full stack the benchmarks run against, started and always stopped in one place.

PostgreSQL databases created per run (app DB and Prefect's), a real `prefect server`, a process
worker running prefect.yaml's deployments, the portal under gunicorn and the sandbox with a
latency model. A :class:`MemorySampler` adds up the resident memory of every process the stack
started (flow-run processes included) and keeps the peak.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from core import migrate
from core.crud import seed_default_tiers
from core.db import make_engine
from core.db import make_sessionmaker
from core.db import session_scope
from deployments.local import PROJECT_ROOT
from deployments.local import free_port
from deployments.local import start_portal
from deployments.local import start_prefect_server
from deployments.local import start_worker
from deployments.local import stop
from deployments.local import wait_healthy
from sandbox.testing import running_sandbox

RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
CSRF = re.compile(r'<input[^>]*name="csrf_token"[^>]*>')
VALUE = re.compile(r'value="([^"]+)"')
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """One line describing the machine the figures come from."""
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    return f"{platform.machine()}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def fresh_database(name: str) -> str:
    """Create an empty PostgreSQL database ``name`` (dropping a leftover); return its URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def drop_database(name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting its sessions."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so every ``finally`` stops what the benchmark started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def write_result(name: str, summary: dict[str, Any], result: dict[str, Any]) -> None:
    """Write ``bench/results/<name>.json`` and print the closing ``RESULT key=value`` line."""
    RESULTS.mkdir(exist_ok=True)
    summary = {
        "benchmark": name,
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "command": "python bench/" + Path(sys.argv[0]).name + " " + " ".join(sys.argv[1:]),
        **summary,
        "result": result,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    line = " ".join(f"{key}={value}" for key, value in result.items())
    sys.stdout.write(f"RESULT {line}\n")
    sys.stdout.flush()


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a portal page."""
    match = CSRF.search(html)
    value = VALUE.search(match.group(0)) if match else None
    if value is None:
        raise RuntimeError("no csrf_token on the page")
    return value.group(1)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- memory and CPU of process trees -----------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces: split after its closing parenthesis.
    return raw[raw.rfind(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """``root`` and all its descendants."""
    children = children if children is not None else _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of one process, shared pages split among their sharers (0 when gone).

    The proportional set size: flow runs forked from the launcher share its imported code, and
    summing plain RSS would count those pages once per child. Plain RSS where PSS is unreadable.
    """
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(root: int) -> float:
    """CPU time of a process tree: live processes plus the children each has already reaped."""
    children = _children_map()
    total = 0.0
    for pid in tree(root, children):
        fields = _stat(pid)
        if fields:
            # utime, stime (fields 14, 15) and the reaped children's cutime, cstime (16, 17):
            # a flow run reaped by the worker (under the launcher, not the root) counts too.
            total += sum(int(f) for f in fields[11:15]) / TICKS
    return total


@dataclass
class MemorySampler:
    """Sample the summed RSS of named process trees every ``interval_s``; keep the peaks."""

    roots: dict[str, int]
    interval_s: float = 0.5
    peak_total: int = 0
    peak_by_role: dict[str, int] = field(default_factory=dict)
    peak_processes: int = 0
    seen: dict[str, set[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample."""
        children = _children_map()
        total, count = 0, 0
        for role, root in self.roots.items():
            pids = tree(root, children)
            self.seen.setdefault(role, set()).update(pids)
            rss = sum(rss_bytes(pid) for pid in pids)
            self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), rss)
            total += rss
            count += len(pids)
        self.peak_total = max(self.peak_total, total)
        self.peak_processes = max(self.peak_processes, count)

    def __enter__(self) -> MemorySampler:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.sample()

        self.sample()
        self._thread = threading.Thread(target=loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def report(self) -> dict[str, Any]:
        """Peaks in MB, by role and in total, plus the process counts."""
        mb = 1024 * 1024
        return {
            "peak_rss_mb": round(self.peak_total / mb),
            "peak_rss_mb_by_role": {k: round(v / mb) for k, v in self.peak_by_role.items()},
            "peak_processes": self.peak_processes,
            "processes_seen": {k: len(v) for k, v in self.seen.items()},
        }


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class StackOptions:
    """What to start and with which parameters."""

    prefect: bool = True
    portal: bool = True
    sandbox_args: list[str] = field(default_factory=list)
    worker_limit: int = 10
    portal_workers: int = 4
    portal_threads: int = 4
    worker_env: dict[str, str] = field(default_factory=dict)
    portal_env: dict[str, str] = field(default_factory=dict)
    stripe_webhook: bool = False
    zapmail_webhook: bool = False
    # Comparison: start every run as a fresh `python -m prefect.engine` (see engine_command()).
    engine_command: bool = False
    # The app DB on a SQLite file in the work folder, as `make demo` runs it (else PostgreSQL).
    sqlite_app_db: bool = False


@dataclass
class Stack:
    """A running stack: URLs, the app DB session factory and the processes (for the sampler)."""

    app_url: str
    factory: Any
    work: Path
    sandbox: Any
    portal_url: str | None = None
    api_url: str | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def roots(self) -> dict[str, int]:
        """Root pid of every process tree the stack started, by role."""
        roots = {role: p.pid for role, p in self.processes.items()}
        if self.sandbox.process is not None:
            roots["sandbox"] = self.sandbox.process.pid
        return roots


def base_env(stack: Stack) -> dict[str, str]:
    """APP_* and PREFECT_* settings every product process of the stack shares."""
    env = {
        "APP_ENV": "dev",
        "APP_DATABASE_URL": stack.app_url,
        "APP_SANDBOX_URL": stack.sandbox.url,
        "APP_INSTANCE_DIR": str(stack.work),
        "PREFECT_HOME": str(stack.work),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    if stack.api_url:
        env["PREFECT_API_URL"] = stack.api_url
        env["APP_PREFECT_API_URL"] = stack.api_url
    if stack.portal_url:
        env["APP_PUBLIC_URL"] = stack.portal_url
    return env


def stop_tree(process: subprocess.Popen[bytes]) -> None:
    """Stop a process group, then kill any descendant that left it (flow-run supervisors do)."""
    descendants = tree(process.pid)[1:] if process.poll() is None else []
    stop(process, grace_s=10)
    for pid in descendants:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def engine_command(api_url: str) -> None:
    """Set the ``command`` job variable of every deployment to ``python -m prefect.engine``.

    The product forks each run from the warm launcher (deployments/launcher.py); this starts a
    fresh interpreter per run instead, which imports Prefect and the flows every time: the
    before/after comparison of the launcher.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.settings import PREFECT_API_URL
    from prefect.settings import temporary_settings

    command = f"{sys.executable} -m prefect.engine"
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            variables = {**(deployment.job_variables or {}), "command": command}
            client.update_deployment(deployment.id, DeploymentUpdate(job_variables=variables))


@contextlib.contextmanager
def running_stack(tag: str, options: StackOptions) -> Iterator[Stack]:
    """Start everything ``options`` asks for; stop it all and drop the databases on exit."""
    tag = f"{tag}_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    # Kept after the run: the server, worker and portal logs explain a surprising figure.
    sys.stderr.write(f"logs: {work}\n")
    app_url = f"sqlite:///{work}/app.db" if options.sqlite_app_db else fresh_database(f"{tag}_app")
    prefect_db = f"{tag}_prefect" if options.prefect else None
    engine = None
    started: list[subprocess.Popen[bytes]] = []
    try:
        migrate.upgrade(app_url)
        engine = make_engine(app_url)
        factory = make_sessionmaker(engine)
        with session_scope(factory) as session:
            seed_default_tiers(session=session)

        api_url = None
        if prefect_db:
            port = free_port()
            server = start_prefect_server(
                database_url=fresh_database(prefect_db),
                home=work,
                port=port,
                log=work / "server.log",
            )
            started.append(server)
            api_url = f"http://127.0.0.1:{port}/api"
            wait_healthy(f"{api_url}/health", server)

        portal_port = free_port()
        portal_url = f"http://127.0.0.1:{portal_port}"
        sandbox_args = list(options.sandbox_args)
        if options.stripe_webhook:
            sandbox_args += ["--stripe-webhook-url", f"{portal_url}/webhooks/stripe"]
        if options.zapmail_webhook:
            sandbox_args += ["--zapmail-webhook-url", f"{portal_url}/webhooks/zapmail"]
        with running_sandbox(extra_args=sandbox_args) as sandbox:
            stack = Stack(
                app_url=app_url,
                factory=factory,
                work=work,
                sandbox=sandbox,
                portal_url=portal_url if options.portal else None,
                api_url=api_url,
            )
            if prefect_db:
                stack.processes["prefect-server"] = server
            env = base_env(stack)
            if prefect_db:
                subprocess.run(
                    [sys.executable, "-m", "deployments.setup"],
                    cwd=PROJECT_ROOT,
                    env={**os.environ, **env, "APP_DIR": str(PROJECT_ROOT)},
                    check=True,
                )
                if options.engine_command:
                    engine_command(api_url or "")
                worker = start_worker(
                    env={**env, **options.worker_env},
                    log=work / "worker.log",
                    limit=options.worker_limit,
                )
                started.append(worker)
                stack.processes["worker"] = worker
            if options.portal:
                portal = start_portal(
                    env={**env, **options.portal_env},
                    port=portal_port,
                    log=work / "portal.log",
                    workers=options.portal_workers,
                    threads=options.portal_threads,
                )
                started.append(portal)
                stack.processes["portal"] = portal
                wait_healthy(f"{portal_url}/healthz", portal)
            yield stack
            # Stop our processes while the sandbox still answers (flow runs finish cleanly).
            for process in reversed(started):
                stop_tree(process)
    finally:
        for process in reversed(started):
            stop_tree(process)
        if engine is not None:
            engine.dispose()
        if not options.sqlite_app_db:
            drop_database(f"{tag}_app")
        if prefect_db:
            drop_database(prefect_db)


def wait_for(predicate: Any, *, timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; return whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
