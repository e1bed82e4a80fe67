"""A warm launcher for flow runs: import Prefect and the flows once, fork a child per run.

Every provisioning run starts a process several times (the first start, then a resume after
each suspended wait), and each start used to spend ~1.3 CPU-seconds importing Prefect, pydantic
and the flows before doing any work: on a 2-core machine at a cohort launch that was a third of
the worker's CPU (docs/benchmarks.md). This process imports all of that once, starts the process
worker as its child (``python -m deployments.launcher -- prefect worker start ...``) and serves a
Unix socket: deployments/launch_run.py, the command the worker runs per flow run, sends its
environment, working directory and standard streams, and the launcher forks a child that applies
them and runs ``prefect.engine`` as ``python -m`` would. The launcher itself never starts a
thread or an event loop, so forking is safe; it reaps children and tells each waiting
launch_run its child's exit status. Code changes need a restart, as for any long-lived worker.
Stopping it (SIGTERM, SIGINT, or the worker exiting) passes SIGTERM to every run, refuses new
ones, kills what is left after ``--stop-grace`` seconds and exits only once every run is gone.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import json
import os
import random
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HEADER = struct.Struct("!I")
MAX_REQUEST = 1 << 20
# How long runs get to end after SIGTERM (a run reports itself crashed) before SIGKILL; below
# the demo's stop grace (deployments/demo.py), so the launcher ends its runs itself.
STOP_GRACE_S = 10.0
# What every flow run needs; importing them here is the whole point of the launcher.
PRELOAD = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "flows.provision",
    "flows.upgrade",
    "flows.replace_domain",
    "flows.refresh_dashboard",
    "flows.cancel_provision",
    "flows.sweep_waiting",
    "flows.sync_warmup",
    "flows.refund_order",
    "flows.sender_profile",
    "flows.watchdog",
    "flows.forwarding",
    "flows.dns_health",
    "flows.capacity",
)


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    body = json.dumps(message).encode()
    with contextlib.suppress(OSError):
        sock.sendall(HEADER.pack(len(body)) + body)


def _receive_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """Read one run request and the three standard-stream descriptors sent with it."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    if len(data) < HEADER.size:
        raise ValueError("short request")
    (size,) = HEADER.unpack(data[: HEADER.size])
    if size > MAX_REQUEST:
        raise ValueError("request too large")
    body = data[HEADER.size :]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("request cut short")
        body += chunk
    if len(fds) != 3:
        raise ValueError("standard streams missing")
    return json.loads(body), fds


def _exit_when_client_gone(conn: socket.socket) -> None:
    """In the child: die at once when launch_run dies (the worker killed the run)."""
    try:
        while conn.recv(1024):
            pass
    except OSError:
        pass
    os._exit(137)


def _run_child(conn: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    """In the forked child: become the run's process and run its module as ``python -m``."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
    os.chdir(str(request["cwd"]))
    cwd = str(request["cwd"])
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    random.seed()  # forked children would otherwise share one random sequence (jitter)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Settings and logging were read from the launcher's environment at import time.
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()
    setup_logging(incremental=False)
    _send(conn, {"pid": os.getpid()})
    threading.Thread(target=_exit_when_client_gone, args=(conn,), daemon=True).start()
    module = str(request["module"])
    sys.argv = [module, *[str(a) for a in list(request["argv"])]]  # type: ignore[call-overload]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return int(exc.code or 0)
    sys.stderr.write(f"{exc.code}\n")
    return 1


def _child(conn: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    """Run the child to the end and exit as an interpreter would, without unwinding the launcher."""
    try:
        _run_child(conn, request, fds)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    # What interpreter shutdown does: join non-daemon threads, run atexit (Prefect flushes its
    # logs and events there), flush the streams. Unwinding instead would run the launcher's
    # own cleanup (and remove its socket) in the child.
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


class Launcher:
    """The serving loop: accept run requests, fork, reap, report exit statuses."""

    def __init__(self, path: Path, *, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.listener.bind(str(path))
        os.chmod(path, 0o600)  # only this user may ask for runs
        self.listener.listen(64)
        self.waiting: dict[int, socket.socket] = {}
        self.stopping = False
        self.stop_grace_s = stop_grace_s

    def stop(self, signum: int) -> None:
        """Stop serving and pass ``signum`` on to every run (called from the signal handler)."""
        self.stopping = True
        for pid in list(self.waiting):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def serve(self, worker: subprocess.Popen[bytes] | None) -> int:
        """Serve until ``worker`` exits or a stop signal arrives; return the exit code.

        Never returns while a run it forked is alive: the runs get SIGTERM, then SIGKILL after
        ``stop_grace_s``, so stopping the launcher stops every run it started.
        """
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        code = 0
        deadline: float | None = None
        try:
            while self.waiting or deadline is None:
                if selector.select(timeout=0.5 if deadline is None else 0.1):
                    self._accept()
                self._reap()
                if deadline is None and worker is not None and worker.poll() is not None:
                    code = worker.returncode
                    self.stop(signal.SIGTERM)  # no worker is left to report these runs
                if deadline is None and self.stopping:
                    deadline = time.monotonic() + self.stop_grace_s
                elif deadline is not None and time.monotonic() > deadline:
                    self._kill_runs()
            return code
        finally:
            selector.close()
            self.listener.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5)  # a local client sends its request at once
        try:
            request, fds = _receive_request(conn)
        except (OSError, ValueError) as exc:
            _send(conn, {"error": str(exc)})
            conn.close()
            return
        if self.stopping:
            # A run the worker started while both were stopping: refused (the worker reports
            # it crashed), never started where nothing will stop it.
            for fd in fds:
                os.close(fd)
            _send(conn, {"error": "the launcher is stopping"})
            conn.close()
            return
        conn.settimeout(None)
        pid = os.fork()
        if pid == 0:
            self.listener.close()
            for other in self.waiting.values():
                other.close()
            # The launcher's stop handler runs here until _run_child resets it: it must not
            # signal the other runs from the child.
            self.waiting.clear()
            _child(conn, request, fds)
        for fd in fds:
            os.close(fd)
        self.waiting[pid] = conn

    def _reap(self) -> None:
        # Only our forked children: waitpid(-1) would also reap the worker behind Popen's back.
        for pid in list(self.waiting):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                conn = self.waiting.pop(pid)
                _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                conn.close()

    def _kill_runs(self) -> None:
        for pid in self.waiting:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def preload() -> None:
    """Import what every flow run needs, and check nothing started a thread (fork safety)."""
    for name in PRELOAD:
        importlib.import_module(name)
    extra = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if extra:
        raise RuntimeError(f"preloading started threads {extra}: forking would be unsafe")


def main(argv: list[str] | None = None) -> int:
    """Preload, start the command after ``--`` (the worker) with the socket in its env, serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, help="socket path (default: a private temp dir)")
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=STOP_GRACE_S,
        help=f"seconds runs get to end after SIGTERM before SIGKILL (default {STOP_GRACE_S:g})",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the worker command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    preload()
    path = args.socket or Path(tempfile.mkdtemp(prefix="launcher-")) / "runs.sock"
    launcher = Launcher(path, stop_grace_s=args.stop_grace)

    def stop(signum: int, _frame: object) -> None:
        launcher.stop(signum)
        if worker is not None and worker.poll() is None:
            worker.send_signal(signum)

    worker = None
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if command:
        worker = subprocess.Popen(command, env={**os.environ, "APP_LAUNCHER_SOCKET": str(path)})
    sys.stdout.write(f"launcher: serving flow runs on {path}\n")
    sys.stdout.flush()
    code = launcher.serve(worker)
    if worker is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=30)
    return code


if __name__ == "__main__":
    sys.exit(main())
