"""No secret in plaintext anywhere after a full paid provisioning and the whole suite (M3).

Runs last (``run_last``): a checkout paid through the signed webhook starts the run on the real
Prefect server, the flow provisions everything against the sandbox, the student reveals their
PlusVibe password, and then every secret the tests used is looked for in the app DB, Prefect's
DB, the Prefect API's logs, parameters and artifacts, every file the session wrote (result
storage, cache records, server and app logs) and the Python log records of this test.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy.engine import make_url

from core.crud import seed_default_tiers
from core.crypto import SecretBox
from core.models import Provision
from core.models import Role
from core.models import User
from core.settings import DEV_DATA_KEY
from core.settings import DEV_SECRET_KEY
from core.settings import SANDBOX_KEYS
from flows.provision import provision
from portal import outbox_sender
from tests.factories import PASSWORD
from tests.factories import make_user
from tests.flows.conftest import Pipeline
from tests.portal import prefect_support
from tests.portal import two_factor_support
from tests.portal.conftest import portal_settings
from tests.portal.helpers import AuthActions
from tests.portal.helpers import post_event
from tests.portal.helpers import wizard_to_checkout
from tests.reliability import figures
from tests.reliability import secret_scan

pytestmark = [pytest.mark.prefect, pytest.mark.run_last]


def test_no_secret_in_plaintext_after_a_paid_provisioning_and_the_whole_suite(
    pipeline: Pipeline,
    portal_prefect: str,
    db_url: str,
    engine: Engine,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from portal import create_app

    caplog.set_level(logging.DEBUG)
    settings = portal_settings(
        db_url, pipeline.sandbox.url, tmp_path, prefect_api_url=portal_prefect
    )
    app = create_app(settings, TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    # A checkout paid at Stripe through the wizard; Stripe's own signed event starts the run...
    seed_default_tiers(session=pipeline.session)
    user = make_user(pipeline.session, "scan@student.test")
    pipeline.session.commit()
    AuthActions(client).login(user.email)
    sid = wizard_to_checkout(client, pipeline.session, "scanbrand")
    pipeline.sandbox.control(
        "POST", f"/stripe/checkout/{sid}/complete", json={"method": "card"}
    ).raise_for_status()
    completed = pipeline.sandbox.control(
        "GET", "/stripe/events?type=checkout.session.completed"
    ).json()["events"][-1]
    assert post_event(client, json.dumps(completed).encode()).json["outcome"] == "started"
    assert outbox_sender.wait_idle()
    pipeline.session.expire_all()
    provision_id = pipeline.session.scalar(select(Provision.id).where(Provision.user_id == user.id))
    # ...and the flow provisions everything. No worker runs the stand-in deployment: end that run
    # so the in-process run can claim the provision (one live run per provision).
    pipeline.session.expire_all()
    started = pipeline.session.get(Provision, provision_id).current_flow_run_id
    prefect_support.fail_run(portal_prefect, started)
    assert provision(provision_id, return_state=True).is_completed()
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert row.status == "active"
    password = SecretBox.from_settings(pipeline.settings).open(row.plusvibe_client_password_enc)
    # The student reveals the password: the one place it may appear (their own page).
    email = pipeline.session.get(User, row.user_id).email
    AuthActions(client).login(email)
    revealed = client.post("/dashboard/plusvibe-password").get_data(as_text=True)
    with client.session_transaction() as cookie:
        session_token = cookie["_user_id"]  # the DB keeps only its SHA-256
    # An admin enrols a second factor, then signs in again with a recovery code and a TOTP code.
    admin = make_user(pipeline.session, "scan@admin.test", role=Role.ADMIN)
    pipeline.session.commit()
    staff = app.test_client()
    staff.post("/auth/login", data={"email": admin.email, "password": PASSWORD})
    setup_page = staff.get(two_factor_support.SETUP).get_data(as_text=True)
    totp_secret = two_factor_support.page_secret(setup_page)
    codes_page = staff.post(
        two_factor_support.SETUP, data={"code": two_factor_support.code_after(totp_secret, None)}
    ).get_data(as_text=True)
    recovery_codes = two_factor_support.RECOVERY_CODE.findall(codes_page)
    assert len(recovery_codes) == 10
    staff.post("/auth/logout")
    staff.post("/auth/login", data={"email": admin.email, "password": PASSWORD})
    used = staff.post(two_factor_support.VERIFY, data={"code": recovery_codes[0]})
    assert used.status_code == 302
    staff.post("/auth/logout")
    two_factor_support.login(staff, admin.email)  # a TOTP code computed from the stored secret
    assert staff.get("/admin/audit").status_code == 200
    app.extensions["portal_db"].dispose()

    secrets = {
        "plusvibe client password": password.get_secret_value(),
        "student sign-in password": PASSWORD,
        "student session token": session_token,
        "app secret key": DEV_SECRET_KEY,
        "app data key": DEV_DATA_KEY,
        **{f"{name} key": value for name, value in SANDBOX_KEYS.items()},
        "admin TOTP secret": totp_secret,
        # As shown, and as typed back without dashes (what the DB hashes).
        **{f"admin recovery code {i}": code for i, code in enumerate(recovery_codes)},
        **{
            f"admin recovery code {i} (plain)": c.replace("-", "")
            for i, c in enumerate(recovery_codes)
        },
    }
    assert secrets["stripe_webhook key"] == settings.stripe_webhook_secret.get_secret_value()
    url = make_url(db_url)
    prefect_url = url.set(drivername="postgresql", database=f"{url.database}_prefect")
    haystacks: dict[str, str] = {
        **secret_scan.app_db(engine),
        **secret_scan.prefect_db(prefect_url.render_as_string(hide_password=False)),
        **secret_scan.prefect_api(portal_prefect),
        **secret_scan.files(tmp_path_factory.getbasetemp()),
        "python log records": "\n".join(r.getMessage() for r in caplog.records),
    }
    assert "scan@student.test" in haystacks["app db: users"]
    assert str(provision_id) in haystacks["prefect api: flow run parameters"]
    assert haystacks["prefect api: logs"] and haystacks["python log records"]
    # Control: the scanner does find the password where it rightly is (the student's own page).
    assert secret_scan.hits({"reveal page": revealed}, secrets) == [
        "plusvibe client password in reveal page"
    ]
    # ...and the second factor where it rightly is: the enrolment pages, shown once.
    assert secret_scan.hits({"setup page": setup_page}, secrets) == [
        "admin TOTP secret in setup page"
    ]
    shown = secret_scan.hits({"codes page": codes_page}, secrets)
    assert shown == [f"admin recovery code {i} in codes page" for i in range(10)]
    found = secret_scan.hits(haystacks, secrets)
    figures.record(
        "secrets",
        secrets=len(secrets),
        secret_names=sorted(secrets),
        places=secret_scan.categories(haystacks),
        places_total=len(haystacks),
        characters_scanned=sum(len(t) for t in haystacks.values()),
        checks=len(secrets) * len(haystacks),
        hits=len(found),
    )
    assert found == []
