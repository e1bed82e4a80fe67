"""`python -m deployments.setup` against a real Prefect server: idempotent, blocks usable."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import get_client
from prefect.blocks.system import Secret
from prefect_sqlalchemy import SqlAlchemyConnector
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.settings import Settings
from deployments import setup
from tasks import runtime

pytestmark = pytest.mark.prefect


def test_work_pool_is_created_once(prefect_api: str) -> None:  # noqa: ARG001
    setup.ensure_work_pool()
    setup.ensure_work_pool()
    with get_client(sync_client=True) as client:
        pools = [p for p in client.read_work_pools() if p.name == setup.WORK_POOL]
    assert [p.type for p in pools] == ["process"]


def test_blocks_hold_the_app_db_and_vendor_keys(
    prefect_api: str,  # noqa: ARG001
    settings: Settings,
) -> None:
    keyed = settings.model_copy(update={"zapmail_api_key": SecretStr("zm-key-for-block-test")})
    assert setup.ensure_blocks(keyed) == setup.ensure_blocks(keyed)  # a rerun overwrites in place

    # The password is a masked component, never part of a URL string shown in the UI.
    with get_client(sync_client=True) as client:
        shown = client.read_block_document_by_name(
            setup.APP_DB_BLOCK, "sqlalchemy-connector", include_secrets=False
        )
    assert isinstance(shown.data["connection_info"], dict)
    assert Secret.load(runtime.SECRET_BLOCKS["zapmail_api_key"]).get() == "zm-key-for-block-test"
    loaded = SqlAlchemyConnector.load(setup.APP_DB_BLOCK).connection_info
    assert loaded.create_url().render_as_string(hide_password=False) == make_url(
        settings.database_url
    ).render_as_string(hide_password=False)


def test_flows_use_the_blocks_when_configured(prefect_api: str, settings: Settings) -> None:  # noqa: ARG001
    keyed = settings.model_copy(update={"heyreach_api_key": SecretStr("hr-key-from-block")})
    setup.ensure_blocks(keyed)
    flow_settings = settings.model_copy(
        update={
            "database_url": "sqlite:////nonexistent/never-used.db",
            "app_db_block": setup.APP_DB_BLOCK,
            "vendor_secret_blocks": True,
            "heyreach_api_key": None,
        }
    )
    runtime.use_settings(flow_settings)
    try:
        assert runtime.settings().heyreach_api_key.get_secret_value() == "hr-key-from-block"
        assert runtime.engine().dialect.name == make_url(settings.database_url).get_backend_name()
        with runtime.db() as session:
            assert session.execute(text("select 1")).scalar() == 1
    finally:
        runtime.use_settings(None)


def test_zombie_automation_is_created_once_and_spares_suspended_runs(
    prefect_api: str,  # noqa: ARG001
) -> None:
    setup.ensure_zombie_automation()
    setup.ensure_zombie_automation()
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(setup.ZOMBIE_AUTOMATION)
    assert len(found) == 1
    trigger = found[0].trigger
    assert "prefect.flow-run.Suspended" in trigger.expect
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert found[0].actions[0].state.value == "CRASHED"


def test_prefect_yaml_names_every_deployment_the_portal_starts() -> None:
    from core import outbox
    from portal import orchestration

    spec = yaml.safe_load((Path(setup.PROJECT_ROOT) / "prefect.yaml").read_text())
    named = set()
    for entry in spec["deployments"]:
        path, function = entry["entrypoint"].split(":")
        flow = getattr(
            importlib.import_module(path.removesuffix(".py").replace("/", ".")), function
        )
        named.add(f"{flow.name}/{entry['name']}")
    for started in (
        orchestration.PROVISION_DEPLOYMENT,
        orchestration.UPGRADE_DEPLOYMENT,
        orchestration.REFRESH_DEPLOYMENT,
        orchestration.CANCEL_DEPLOYMENT,
        outbox.SENDER_PROFILE_DEPLOYMENT,
    ):
        assert started in named, f"prefect.yaml has no deployment {started}"
