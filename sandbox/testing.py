"""Run the sandbox as a subprocess for tests and benchmarks, with a small control-plane client."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

_URL_LINE = re.compile(r"Sandbox: (http://\S+)")


class SandboxStartError(RuntimeError):
    """The sandbox subprocess did not come up."""


class SandboxHandle:
    """A running sandbox: its base URLs and helpers over /_sandbox."""

    def __init__(self, url: str, process: subprocess.Popen | None = None) -> None:
        self.url = url
        self.process = process
        self._http = httpx.Client(base_url=f"{url}/_sandbox", timeout=10.0)

    @property
    def zapmail_url(self) -> str:
        """Zapmail base URL (paths below it are /v2/...)."""
        return f"{self.url}/zapmail/api"

    @property
    def plusvibe_url(self) -> str:
        """PlusVibe base URL."""
        return f"{self.url}/plusvibe/api/v1"

    @property
    def heyreach_url(self) -> str:
        """HeyReach base URL."""
        return f"{self.url}/heyreach/api/public"

    @property
    def stripe_url(self) -> str:
        """Stripe base URL (give it to StripeClient as the api base)."""
        return f"{self.url}/stripe"

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Raw request to /_sandbox{path}; the status is not checked."""
        return self._http.request(method, path, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.control(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self, *, config: bool = True) -> None:
        """Clear all vendor state, ledger, faults, stats and limits (and config, by default)."""
        self._json("POST", "/reset", json={"config": config})

    def configure(self, **config: Any) -> dict:
        """Merge settings into the sandbox config; return the whole config."""
        return self._json("POST", "/config", json=config)

    def ledger(self, *, vendor: str | None = None, kind: str | None = None) -> list[dict]:
        """Return ledger entries, optionally filtered."""
        params = {k: v for k, v in (("vendor", vendor), ("kind", kind)) if v}
        return self._json("GET", "/ledger", params=params)["entries"]

    def add_fault(self, **fault: Any) -> dict:
        """Inject a fault (see docs/sandbox.md); return it with its id."""
        return self._json("POST", "/faults", json=fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._json("DELETE", "/faults")

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward."""
        self._json("POST", "/clock", json={"advance_seconds": seconds})

    def stats(self) -> dict:
        """Return per-vendor, per-route call counts."""
        return self._json("GET", "/stats")

    def close(self) -> None:
        """Stop the subprocess (if we own one) and close the control client."""
        self._http.close()
        if self.process is not None:
            _stop(self.process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def running_sandbox(
    *, speed: float = 1.0, extra_args: Sequence[str] = (), startup_timeout: float = 15.0
) -> Iterator[SandboxHandle]:
    """Start `python -m sandbox --host 127.0.0.1 --port 0` as a subprocess, wait for /_sandbox/health, stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="sandbox-") as tmp:
        out_path, err_path = Path(tmp, "stdout.log"), Path(tmp, "stderr.log")
        cmd = [
            sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", "0",
            "--speed", str(speed), "--exit-with-parent", *extra_args,
        ]  # fmt: skip
        # The child must import this checkout's `sandbox`, whatever the caller's cwd.
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(
                    None,
                    [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")],
                )
            ),
        }
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
            )
        handle = None
        try:
            url = _wait_for_url(process, out_path, err_path, startup_timeout)
            handle = SandboxHandle(url, process)
            _wait_healthy(handle, process, err_path, startup_timeout)
            yield handle
        finally:
            if handle is not None:
                handle.close()
            else:
                _stop(process)


def _wait_for_url(process: subprocess.Popen, out_path: Path, err_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _URL_LINE.search(out_path.read_text(errors="replace"))
        if match:
            return match.group(1)
        if process.poll() is not None:
            raise SandboxStartError(f"sandbox exited with {process.returncode}:\n{_tail(err_path)}")
        time.sleep(0.02)
    raise SandboxStartError(f"sandbox did not print its URL within {timeout}s:\n{_tail(err_path)}")


def _wait_healthy(
    handle: SandboxHandle, process: subprocess.Popen, err_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if handle.control("GET", "/health").status_code == 200:
                return
        if process.poll() is not None:
            break
        time.sleep(0.02)
    raise SandboxStartError(f"sandbox never became healthy:\n{_tail(err_path)}")
