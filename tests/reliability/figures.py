"""The figures the reliability suites measure, printed at the end of the run for docs/reliability.md.

Each suite records what it tried and what held; ``pytest_terminal_summary`` prints them, and
``RELIABILITY_REPORT=path`` also writes them as JSON (how docs/reliability.md was filled).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Long form (``make chaos``): the full 1,000+ deliveries and larger hypothesis budgets.
LONG = os.environ.get("RELIABILITY_LONG") == "1"
# `make test-fast`: the smallest budgets that still walk every rule once or twice.
QUICK = os.environ.get("RELIABILITY_QUICK") == "1" and not LONG

_FIGURES: dict[str, dict[str, Any]] = {}


def record(table: str, **values: Any) -> None:
    """Add (or overwrite) figures under ``table``."""
    _FIGURES.setdefault(table, {}).update(values)


def add(table: str, key: str, amount: int) -> None:
    """Add ``amount`` to a counter under ``table``."""
    row = _FIGURES.setdefault(table, {})
    row[key] = int(row.get(key, 0)) + amount


def snapshot() -> dict[str, dict[str, Any]]:
    """A copy of everything recorded so far."""
    return json.loads(json.dumps(_FIGURES, default=str))


def write_report() -> Path | None:
    """Write the figures to ``$RELIABILITY_REPORT`` when it is set; return the path."""
    target = os.environ.get("RELIABILITY_REPORT")
    if not target or not _FIGURES:
        return None
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"long": LONG, **snapshot()}, indent=2, sort_keys=True) + "\n")
    return path
