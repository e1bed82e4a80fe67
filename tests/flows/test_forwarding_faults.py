"""Faults on the on-demand forwarding run: a website change or removal lands once per domain.

A student's website change sets forwarding (``POST /v2/domains/forwarding``) and its removal
calls ``remove-forwarding`` per domain. Each fault kind of the matrix meets the first call;
the run ends applied by itself (its task retries list Zapmail first) or after one rerun, and
the sandbox's ledger shows each domain changed exactly once. The slice in ``make test`` takes
one kind per operation; RELIABILITY_LONG=1 runs them all.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

from core.models import Provision
from flows.forwarding import forwarding
from tests.flows.conftest import Pipeline
from tests.flows.test_parity_flows import SITE
from tests.flows.test_parity_flows import active_provision
from tests.flows.test_parity_flows import forwarding_ledger
from tests.flows.test_parity_flows import names_of
from tests.flows.test_provision_faults import KINDS
from tests.flows.test_provision_faults import log_outcome

pytestmark = pytest.mark.prefect

NEW_SITE = "https://tim-moved.example/"
OPERATIONS = {
    "set": ("/v2/domains/forwarding", "domain_forwarding_set", NEW_SITE),
    "remove": ("/v2/domains/remove-forwarding", "domain_forwarding_removed", None),
}
SLICE = {("set", "response lost"), ("remove", "5xx")}
CELLS = [
    (op, kind)
    for op in OPERATIONS
    for kind in KINDS
    if os.environ.get("RELIABILITY_LONG") or (op, kind) in SLICE
]


@pytest.mark.parametrize(("operation", "kind"), CELLS, ids=[f"{o}-{k}" for o, k in CELLS])
def test_a_fault_on_a_website_change_still_changes_each_domain_once(
    pipeline: Pipeline, operation: str, kind: str
) -> None:
    pipeline.settings.vendor_timeout_s = 1.0
    email = f"fwd-{operation}-{kind.replace(' ', '')}@student.test"
    provision_id = active_provision(pipeline, email, SITE)
    names = names_of(pipeline, provision_id)
    path, ledger_kind, target = OPERATIONS[operation]
    before = forwarding_ledger(pipeline, ledger_kind)
    row = pipeline.session.get(Provision, provision_id)
    assert row is not None
    row.forward_to = target
    pipeline.session.commit()
    fault: dict[str, Any] = pipeline.sandbox.add_fault(
        vendor="zapmail", method="POST", path=path, **KINDS[kind]
    )

    state = forwarding(provision_id, f"forwarding:{kind}:1", return_state=True)
    outcome = "automatically"
    if not state.is_completed():
        outcome = "after one retry"
        state = forwarding(provision_id, f"forwarding:{kind}:2", return_state=True)
    assert state.is_completed(), state.message
    log_outcome(outcome)

    hits = {f["id"]: f["hits"] for f in pipeline.sandbox.control("GET", "/faults").json()["faults"]}
    assert hits[fault["id"]] >= 1, "the change met the fault"
    assert forwarding_ledger(pipeline, ledger_kind) - before == Counter(names)
    for name in names:
        visit = pipeline.sandbox.control("GET", "/zapmail/visit", params={"domain": name}).json()
        assert visit.get("location") == target, visit
