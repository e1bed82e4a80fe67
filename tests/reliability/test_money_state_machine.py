"""Issue 13's proof: the purchase and fulfilment protocols under any interleaving of rules.

Two hypothesis ``RuleBasedStateMachine``s against the sandbox and the real test database:

- the purchase machine (tests/reliability/purchase_machine.py) starts, retries, kills and races
  ``tasks.purchase.buy_domains`` under every buy-call fault, with cancellations and a cohort
  burst against a tight wallet;
- the fulfilment machine (tests/reliability/fulfilment_machine.py) drives the portal (wizard,
  the Stripe sandbox's checkout, signed webhook deliveries, cancellation) and drains the outbox.

A short budget runs in ``make test``; ``RELIABILITY_LONG=1`` (``make chaos``) runs the long one.
The figures (examples, steps per rule, charges per domain, orphans) land in docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import Engine

from core import outbox
from core.settings import Settings
from portal import outbox_sender
from tasks import runtime
from tests.reliability import figures
from tests.reliability.fulfilment_machine import TABLE as FULFILMENT_TABLE
from tests.reliability.fulfilment_machine import FulfilmentMachine
from tests.reliability.money_orders import OrderWorld
from tests.reliability.money_worker import KillableWorkers
from tests.reliability.money_world import PurchaseWorld
from tests.reliability.money_world import delete_all_rows
from tests.reliability.purchase_machine import TABLE as PURCHASE_TABLE
from tests.reliability.purchase_machine import PurchaseMachine


def budget(
    short: tuple[int, int], long: tuple[int, int], quick: tuple[int, int] = (2, 6)
) -> hsettings:
    """Hypothesis (examples, steps): quick in ``make test-fast``, short in ``make test``, else long."""
    examples, steps = long if figures.LONG else quick if figures.QUICK else short
    return hsettings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


PURCHASE_BUDGET = budget(short=(8, 10), long=(150, 25))
FULFILMENT_BUDGET = budget(short=(10, 12), long=(150, 30))


@pytest.fixture
def purchase_world(
    sandbox: Any, engine: Engine, db_url: str, tmp_path: Path
) -> Iterator[tuple[PurchaseWorld, KillableWorkers]]:
    """Settings on the test DB and the sandbox (no Prefect), plus a pool of killable workers."""
    fields = {
        "env": "test",
        "database_url": db_url,
        "sandbox_url": sandbox.url,
        "instance_dir": str(tmp_path),
        # Short settle and timeout: an absence is decided, and a held answer given up, quickly.
        "purchase_settle_s": 0.5,
        "vendor_timeout_s": 1.0,
    }
    settings = Settings(_env_file=None, **fields)
    runtime.use_settings(settings)
    runtime.use_prefect_limits(False)
    workers = KillableWorkers(fields)
    workers.warm()
    try:
        yield PurchaseWorld(sandbox=sandbox, engine=engine, settings=settings), workers
    finally:
        workers.close()
        runtime.use_prefect_limits(True)
        runtime.use_settings(None)
        sandbox.reset(config=True)
        delete_all_rows(engine)


def _run(machine: type, table: str, budget_settings: hsettings) -> None:
    figures.record(
        table,
        budget=f"{budget_settings.max_examples} examples x {budget_settings.stateful_step_count} steps",
        command="make chaos"
        if figures.LONG
        else "make test-fast"
        if figures.QUICK
        else "make test",
    )
    try:
        run_state_machine_as_test(machine, settings=budget_settings)
    except BaseException:
        figures.add(table, "violations", 1)
        raise
    figures.add(table, "violations", 0)


def test_purchases_charge_each_domain_once_under_any_interleaving(
    purchase_world: tuple[PurchaseWorld, KillableWorkers],
) -> None:
    world, workers = purchase_world
    machine = type("Purchase", (PurchaseMachine,), {"world": world, "workers": workers})
    _run(machine, PURCHASE_TABLE, PURCHASE_BUDGET)


@pytest.fixture
def order_world(
    sandbox: Any, engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OrderWorld]:
    """The portal on the test DB and the sandbox; the outbox is drained by the test, not a thread."""
    # The portal's background sender would start runs on Prefect (absent here) and back off;
    # the machine drains the outbox itself, at moments of its choosing.
    monkeypatch.setattr(outbox_sender, "send_committed", lambda db: len(outbox.take_enqueued(db)))
    world = OrderWorld.build(sandbox, engine, db_url, tmp_path)
    runtime.use_settings(world.settings)
    runtime.use_prefect_limits(False)
    try:
        yield world
    finally:
        world.close()
        runtime.use_prefect_limits(True)
        runtime.use_settings(None)
        sandbox.reset(config=True)
        delete_all_rows(engine)


def test_every_paid_checkout_is_started_once_or_refunded_under_any_interleaving(
    order_world: OrderWorld,
) -> None:
    machine = type("Fulfilment", (FulfilmentMachine,), {"world": order_world})
    _run(machine, FULFILMENT_TABLE, FULFILMENT_BUDGET)
