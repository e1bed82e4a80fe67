"""Fixtures for the vendor client tests: a scripted MockTransport, canned JSON, the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).parent

API_KEY = "key-SUPERSECRET-0123456789"
PASSWORD = "pw-TOPSECRET-9876543210"

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeVendor:
    """A scripted vendor for ``httpx.MockTransport``: routes by method + path suffix.

    Each route holds a queue of replies; the last one repeats. Every request is recorded.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *replies: Reply) -> FakeVendor:
        """Script the replies for ``method`` on a path ending with ``path``."""
        self.routes[(method.upper(), path)] = list(replies)
        return self

    @property
    def transport(self) -> httpx.MockTransport:
        """A transport to inject into a client."""
        return httpx.MockTransport(self)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        candidates = [
            (path, replies)
            for (method, path), replies in self.routes.items()
            if method == request.method and request.url.path.endswith(path)
        ]
        if not candidates:
            return httpx.Response(404, json={"message": f"no route {request.url.path}"})
        # The longest suffix wins: "/v2/domains/buy" before "/v2/domains".
        _, replies = max(candidates, key=lambda item: len(item[0]))
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        return reply

    def last(self, path: str | None = None) -> httpx.Request:
        """Return the last request (optionally the last one to a path suffix)."""
        for request in reversed(self.requests):
            if path is None or request.url.path.endswith(path):
                return request
        raise AssertionError(f"no request to {path}")

    def body(self, path: str | None = None) -> Any:
        """Return the decoded JSON body of the last request (to ``path``)."""
        return json.loads(self.last(path).content)


def load(vendor: str, name: str) -> Any:
    """Read ``tests/clients/<vendor>/data/<name>.json``."""
    return json.loads((HERE / vendor / "data" / f"{name}.json").read_text())


def respond(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    """Build a JSON response (``body`` may be a str for raw text)."""
    if isinstance(body, str | bytes):
        return httpx.Response(status, content=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def fake() -> FakeVendor:
    """A fresh scripted vendor."""
    return FakeVendor()


@pytest.fixture
def canned() -> Callable[[str, str], Any]:
    """Loader for canned vendor JSON."""
    return load


@pytest.fixture
def reply() -> Callable[..., httpx.Response]:
    """Factory for canned responses."""
    return respond


@pytest.fixture(scope="session")
def client_sandbox() -> Iterator[Any]:
    """The vendor sandbox over real HTTP on loopback, for the client contract tests."""
    try:
        from sandbox.testing import running_sandbox
    except ImportError as exc:  # the sandbox is built in parallel; unit tests must still run
        pytest.skip(f"sandbox not available: {exc}")
    with running_sandbox() as handle:
        yield handle


@pytest.fixture
def sb(client_sandbox: Any) -> Iterator[Any]:
    """The sandbox, reset to a clean state with no faults, for one contract test."""
    client_sandbox.reset()
    client_sandbox.clear_faults()
    yield client_sandbox
    client_sandbox.clear_faults()
