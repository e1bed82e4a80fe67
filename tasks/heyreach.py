"""Prefect tasks that call HeyReach: the student's lead list."""

from __future__ import annotations

from prefect import task

from core.models import Provision
from tasks import guards
from tasks import records
from tasks import runtime
from tasks.locks import provision_lock
from tasks.policies import business_key
from tasks.policies import vendor_task_options


def list_name(provision_id: int, email: str) -> str:
    """The HeyReach list name of a provision (looked up before creating)."""
    return f"Outbound #{provision_id} - {email}"


@task(
    name="heyreach-list",
    **vendor_task_options(business_key("heyreach-list", "provision_id")),
)
def ensure_heyreach_list(provision_id: int, step_key: str = "heyreach_list") -> int:
    """Find or create the student's lead list; return its id."""
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            assert provision is not None
            existing, email = provision.heyreach_list_id, provision.user.email
        if existing:
            return existing
        client = runtime.heyreach()
        name = list_name(provision_id, email)
        found = client.find_list_by_name(name) or client.create_list(name)
        with runtime.db() as session:
            session.get(Provision, provision_id).heyreach_list_id = found.id  # type: ignore[union-attr]
        details["list_id"] = found.id
        return found.id


@task(name="heyreach-lead-count", **vendor_task_options(None))
def record_lead_count(provision_id: int) -> int | None:
    """Store the student's HeyReach list size for the dashboard."""
    with runtime.db() as session:
        list_id = session.get(Provision, provision_id).heyreach_list_id  # type: ignore[union-attr]
    if not list_id:
        return None
    count = runtime.heyreach().get_lead_count(list_id)
    with runtime.db() as session:
        session.get(Provision, provision_id).heyreach_lead_count = count  # type: ignore[union-attr]
    return count
