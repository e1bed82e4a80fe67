"""Gather every place a secret could leak to (as text) and look for secrets in them (M3)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy import select

from core.db import Base


def app_db(engine: Engine) -> dict[str, str]:
    """Every row of every app DB table, one haystack per table."""
    found = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            found[f"app db: {table.name}"] = "\n".join(repr(tuple(r)) for r in rows)
    return found


def prefect_db(url: str) -> dict[str, str]:
    """Every row of every table of Prefect's PostgreSQL database (runs, states, logs, blocks...)."""
    found = {}
    with psycopg.connect(url) as conn:
        tables = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        ]
        for table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()  # noqa: S608
            found[f"prefect db: {table}"] = "\n".join(r[0] for r in rows)
    return found


def files(root: Path) -> dict[str, str]:
    """Every file under ``root``: result storage, cache records, server and app logs."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[f"file: {path.relative_to(root)}"] = path.read_bytes().decode("utf-8", "replace")
    return found


def prefect_api(api_url: str) -> dict[str, str]:
    """Logs, flow run parameters and artifacts as the Prefect API serves them (all of them)."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.settings import temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        logs = _all(lambda offset: client.read_logs(limit=200, offset=offset))
        runs = _all(lambda offset: client.read_flow_runs(limit=200, offset=offset))
        artifacts = _all(lambda offset: client.read_artifacts(limit=200, offset=offset))
    return {
        "prefect api: logs": "\n".join(log.message for log in logs),
        "prefect api: flow run parameters": "\n".join(repr(run.parameters) for run in runs),
        "prefect api: artifacts": "\n".join(f"{a.key} {a.description} {a.data}" for a in artifacts),
    }


def _all(page: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        batch = page(len(items))
        items += batch
        if len(batch) < 200:
            return items


def hits(haystacks: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """``"<secret> in <place>"`` for every secret found in plaintext."""
    return [
        f"{what} in {where}"
        for where, text in haystacks.items()
        for what, secret in secrets.items()
        if secret and secret in text
    ]


def categories(haystacks: Iterable[str]) -> dict[str, int]:
    """How many haystacks of each kind (app db, prefect db, file, ...) were scanned."""
    counts: dict[str, int] = {}
    for name in haystacks:
        kind = name.split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts
