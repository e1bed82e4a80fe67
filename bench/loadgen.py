"""A small HTTP/1.1 load generator, run as its own process so it measures what a client sees.

Reads a JSON plan on stdin: ``{"base": "http://127.0.0.1:8000", "user_agent": "...", "cookies":
[...], "phases": [{"name", "path", "mode": "open"|"closed", "rate", "concurrency",
"duration_s", "auth", "conditional"}]}`` and writes one JSON object per phase to stdout.

Conditional phases do what the progress page does: each signed-in client (cookie) remembers the
last ETag it was sent and sends it back in If-None-Match; a 304 then counts as a success (and is
counted apart, as ``not_modified``). The tags are kept across phases, as a page keeps polling.

Open loop: request i is due at start + i / rate whatever happened before, and its latency is
measured from that due time, so a slow server cannot slow the arrivals down and hide its queue
(no coordinated omission). Closed loop: ``concurrency`` clients send back to back; this finds the
throughput ceiling. Raw asyncio streams with keep-alive: a few tens of microseconds of client CPU
per request, so the generator does not compete much with the server for the two cores.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_CONNECTIONS = 256
# Non-200 statuses and exception names of the current phase (one phase runs at a time).
STATUSES: dict[object, int] = {}
# The last ETag each client (cookie) was sent, per path: what each student's page remembers.
ETAGS: dict[tuple[str, str | None], str] = {}


@dataclass
class Target:
    """Where to send requests and as whom."""

    host: str
    port: int
    user_agent: str
    cookies: list[str]


class Pool:
    """Keep-alive connections to one server, opened on demand."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.available = asyncio.Condition()

    async def get(
        self, *, fresh: bool = False
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        """An idle connection (unless ``fresh``), a new one, or wait; and whether it is new."""
        async with self.available:
            while not (self.idle and not fresh) and self.open >= MAX_CONNECTIONS:
                if fresh and self.idle:
                    self.idle.pop()[1].close()
                    self.open -= 1
                    break
                await self.available.wait()
            if self.idle and not fresh:
                return self.idle.pop(), False
            self.open += 1
        try:
            return await asyncio.open_connection(self.target.host, self.target.port), True
        except OSError:
            await self.drop()
            raise

    async def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        """Return a healthy connection."""
        async with self.available:
            self.idle.append(conn)
            self.available.notify()

    async def drop(self, conn: Any = None) -> None:
        """Forget a broken connection."""
        if conn is not None:
            conn[1].close()
        async with self.available:
            self.open -= 1
            self.available.notify()


async def _exchange(conn: Any, raw: bytes) -> tuple[int, bool, str | None]:
    reader, writer = conn
    writer.write(raw)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed by server")
    status = int(status_line.split()[1])
    length, chunked, keep, etag = 0, False, True, None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, raw_value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), raw_value.strip().lower()
        if name == "etag":
            etag = raw_value.strip()  # opaque: keep its case
        elif name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            keep = False
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep, etag


async def request(pool: Pool, path: str, cookie: str | None, *, conditional: bool = False) -> int:
    """Send one GET (If-None-Match if ``conditional``); resend once on a connection closed idle."""
    headers = [
        f"GET {path} HTTP/1.1",
        f"Host: {pool.target.host}:{pool.target.port}",
        f"User-Agent: {pool.target.user_agent}",
        "Accept: application/json, text/html",
    ]
    if cookie:
        headers.append(f"Cookie: portal_session={cookie}")
    known = ETAGS.get((path, cookie)) if conditional else None
    if known:
        headers.append(f"If-None-Match: {known}")
    raw = ("\r\n".join(headers) + "\r\n\r\n").encode()
    retry = False
    while True:
        # A kept-alive connection the server has closed meanwhile fails at once: retry the
        # request on a new connection (a failure on a new connection is a real error).
        conn, fresh = await pool.get(fresh=retry)
        try:
            status, keep, etag = await _exchange(conn, raw)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError, IndexError):
            await pool.drop(conn)
            if fresh:
                raise
            retry = True
            continue
        if keep:
            await pool.put(conn)
        else:
            await pool.drop(conn)
        if conditional and etag and status in (200, 304):
            ETAGS[(path, cookie)] = etag
        return status


def _ok(phase: dict[str, Any], status: int) -> bool:
    """Whether ``status`` is a success: 200, or 304 in a conditional phase (counted apart)."""
    if status == 304 and phase.get("conditional"):
        STATUSES[304] = STATUSES.get(304, 0) + 1
        return True
    return status == 200


async def open_loop(pool: Pool, phase: dict[str, Any], cookies: Any) -> dict[str, Any]:
    """Requests at a fixed rate; latency from each request's due time."""
    rate, duration = float(phase["rate"]), float(phase["duration_s"])
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(due: float) -> None:
        nonlocal errors
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            status = await request(
                pool,
                phase["path"],
                next(cookies) if phase["auth"] else None,
                conditional=bool(phase.get("conditional")),
            )
        except Exception as exc:  # noqa: BLE001 - every failure is an error of the phase
            errors += 1
            STATUSES[type(exc).__name__] = STATUSES.get(type(exc).__name__, 0) + 1
            return
        if not _ok(phase, status):
            errors += 1
            STATUSES[status] = STATUSES.get(status, 0) + 1
        latencies.append(time.perf_counter() - due)

    count = int(rate * duration)
    tasks = [asyncio.create_task(one(start + i / rate)) for i in range(count)]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return summarize(phase, latencies, errors, elapsed)


async def closed_loop(pool: Pool, phase: dict[str, Any], cookies: Any) -> dict[str, Any]:
    """``concurrency`` clients back to back for the duration; the throughput ceiling."""
    deadline = time.perf_counter() + float(phase["duration_s"])
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                status = await request(
                    pool,
                    phase["path"],
                    next(cookies) if phase["auth"] else None,
                    conditional=bool(phase.get("conditional")),
                )
            except Exception as exc:  # noqa: BLE001
                errors += 1
                STATUSES[type(exc).__name__] = STATUSES.get(type(exc).__name__, 0) + 1
                continue
            if not _ok(phase, status):
                errors += 1
                STATUSES[status] = STATUSES.get(status, 0) + 1
            latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(int(phase["concurrency"]))))
    return summarize(phase, latencies, errors, time.perf_counter() - start)


def summarize(
    phase: dict[str, Any], latencies: list[float], errors: int, elapsed: float
) -> dict[str, Any]:
    """Percentiles in ms and the achieved throughput."""
    ordered = sorted(latencies)
    not_modified = STATUSES.pop(304, 0) if phase.get("conditional") else 0
    statuses = dict(STATUSES)
    STATUSES.clear()

    def pct(q: float) -> float:
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000, 1)

    return {
        **phase,
        "requests": len(ordered),
        "errors": errors,
        "error_kinds": statuses,
        "not_modified": not_modified,
        "rps": round(len(ordered) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else 0.0,
    }


async def main_async(plan: dict[str, Any]) -> None:
    """Run every phase in order, printing each result as it finishes."""
    base = urlsplit(plan["base"])
    target = Target(base.hostname or "127.0.0.1", base.port or 80, plan["user_agent"], [])
    pool = Pool(target)
    cookies = itertools.cycle(plan["cookies"] or [None])
    for phase in plan["phases"]:
        runner = open_loop if phase["mode"] == "open" else closed_loop
        result = await runner(pool, phase, cookies)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main() -> None:
    """Read the plan from stdin and run it."""
    asyncio.run(main_async(json.load(sys.stdin)))


if __name__ == "__main__":
    main()
