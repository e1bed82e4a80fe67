"""Start one flow run the way `python -m prefect.engine` would, but forked from a warm launcher.

This is the command a process worker runs for every flow run (prefect.yaml). It uses the
standard library only and starts in a few milliseconds: it hands its environment, working
directory and standard streams to the launcher (deployments/launcher.py), which forks a child
that already has Prefect and the flows imported, then it stands in for that child: signals it
receives are passed on, and it exits with the child's status, so the worker sees what it would
see of the engine itself. Killing this process kills the run (the child watches the socket).
Without a launcher (APP_LAUNCHER_SOCKET unset or not answering) it becomes the engine itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

ENGINE = "prefect.engine"
HEADER = struct.Struct("!I")


def _become_engine(module: str) -> None:
    os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[2:]])


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _read_message(sock: socket.socket) -> dict[str, object] | None:
    """One length-prefixed JSON message, or None if the launcher side closed."""
    data = b""
    while len(data) < HEADER.size:
        chunk = sock.recv(HEADER.size - len(data))
        if not chunk:
            return None
        data += chunk
    (size,) = HEADER.unpack(data)
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def main() -> None:
    """Run the module named in argv[1] (default: the Prefect engine) in a forked child."""
    module = sys.argv[1] if len(sys.argv) > 1 else ENGINE
    path = os.environ.get("APP_LAUNCHER_SOCKET")
    sock = _connect(path) if path else None
    if sock is None:
        _become_engine(module)
        return
    request = json.dumps(
        {"module": module, "argv": sys.argv[2:], "env": dict(os.environ), "cwd": os.getcwd()}
    ).encode()
    socket.send_fds(sock, [HEADER.pack(len(request)) + request], [0, 1, 2])
    started = _read_message(sock)
    if not started or "pid" not in started:
        sys.exit(f"launcher refused the run: {started}")
    child = int(started["pid"])  # type: ignore[arg-type]

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    finished = _read_message(sock)
    code = int(finished["exit"]) if finished else 1  # type: ignore[arg-type]
    if code < 0:
        # Die of the same signal, as the engine would have: the worker reports it that way.
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be handled anyway
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
