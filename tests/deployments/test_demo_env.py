"""The demo's child environment: what every process it starts is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from deployments.demo import child_env


def test_the_demo_tells_every_process_how_fast_the_vendors_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APP_VENDOR_TIME_SCALE", raising=False)
    settings = Settings(_env_file=None, instance_dir=str(tmp_path))
    env = child_env(settings, "http://127.0.0.1:4299/api", 40.0)
    # The portal reads it back into the same setting the progress estimates divide by.
    rebuilt = Settings(_env_file=None, vendor_time_scale=env["APP_VENDOR_TIME_SCALE"])
    assert rebuilt.vendor_time_scale == 40.0
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4299/api"
