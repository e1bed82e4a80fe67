"""The sender profile page: upload checks, name rules, the refused username, and what it writes.

A refused request writes nothing (no profile row, no outbox start); an accepted one writes the
next revision and exactly one outbox start of sender-profile/on-demand under its own key.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from core.db import utcnow
from core.models import OutboxMessage
from core.models import Provision
from core.models import SenderProfile
from core.sender_profile import USERNAME_REFUSAL
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user
from tests.support.pictures import jpeg
from tests.support.pictures import png
from tests.support.pictures import webp

URL = "/dashboard/profile"
# Every test runs as the signed-in active student of the fixture below.
pytestmark = pytest.mark.usefixtures("student")


@pytest.fixture
def student(client: FlaskClient, session: Session) -> dict[str, Any]:
    """An active student (sender Tim Keen, 3 domains, 6 mailboxes), signed in."""
    user = make_user(session, "ann@example.com")
    provision = make_provision(session, user, status="active")
    session.commit()
    assert (
        client.post("/auth/login", data={"email": user.email, "password": PASSWORD}).status_code
        == 302
    )
    return {"provision_id": provision.id}


def upload(data: bytes, name: str = "me.png") -> FileStorage:
    return FileStorage(io.BytesIO(data), filename=name)


def post(client: FlaskClient, **fields: Any) -> Any:
    """POST the form as multipart, encoded in memory (the test client spools big bodies to a
    temporary file it never closes)."""
    boundary, body = encode_multipart({"first_name": "Jordan", "last_name": "Reyes", **fields})
    return client.post(URL, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def written(session: Session) -> tuple[int, int]:
    session.expire_all()
    profiles = session.scalar(select(func.count()).select_from(SenderProfile))
    starts = session.scalar(select(func.count()).select_from(OutboxMessage))
    return int(profiles or 0), int(starts or 0)


def text(response: Any) -> str:
    """The page's HTML with whitespace collapsed."""
    return " ".join(response.get_data(as_text=True).split())


def words(response: Any) -> str:
    """What the page says: its text without tags."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def test_the_page_shows_the_wizard_names_and_the_dashboard_links_to_it(client):
    page = text(client.get(URL))
    assert 'value="Tim"' in page and 'value="Keen"' in page
    assert "Your mailboxes send as Tim Keen , without a picture." in words(client.get(URL))
    assert "all 6 of your mailboxes" in page
    assert 'name="username"' not in page  # there is no username field to fill
    assert f'href="{URL}"' in client.get("/dashboard").get_data(as_text=True)


def test_names_and_a_picture_are_saved_as_one_request_and_one_run(client, session, student):
    picture = png(200, 200)

    response = post(client, picture=upload(picture))

    assert response.status_code == 303 and response.headers["Location"].endswith(URL)
    session.expire_all()
    row = session.scalars(select(SenderProfile)).one()
    assert (row.provision_id, row.revision, row.status) == (student["provision_id"], 1, "pending")
    assert (row.first_name, row.last_name) == ("Jordan", "Reyes")
    assert row.picture == picture and row.content_type == "image/png"
    assert row.picture_sha256 == hashlib.sha256(picture).hexdigest()
    assert row.picture_token and len(row.picture_token) >= 40
    (start,) = session.scalars(select(OutboxMessage)).all()
    assert start.key == f"sender-profile:{student['provision_id']}:1"
    assert start.payload == {
        "deployment": "sender-profile/on-demand",
        "parameters": {"provision_id": student["provision_id"], "revision": 1},
    }
    page = text(client.get(URL))
    assert "Saved. Your mailboxes are being updated" in page
    assert "Pending" in page and "being applied" in page
    # The picture is served at its unguessable address, byte for byte, and nowhere else.
    served = client.get(f"/sender-picture?key={row.picture_token}")
    assert served.status_code == 200 and served.data == picture
    assert served.mimetype == "image/png" and "immutable" in served.headers["Cache-Control"]
    assert f"/sender-picture?key={row.picture_token}" in page
    for key in ("", "x" * 43, row.picture_token[:-1]):
        assert client.get(f"/sender-picture?key={key}").status_code == 404


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [(jpeg(400, 400), "me.png", "image/jpeg"), (webp(300, 300), "me.gif", "image/webp")],
)
def test_the_type_comes_from_the_bytes_not_the_name(client, session, data, filename, content_type):
    assert post(client, picture=upload(data, filename)).status_code == 303
    session.expire_all()
    assert session.scalars(select(SenderProfile.content_type)).one() == content_type


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"GIF89a" + b"\x00" * 64, "me.png", "is not a PNG, JPEG or WebP picture"),
        (b"%PDF-1.7 not a picture", "me.jpg", "is not a PNG, JPEG or WebP picture"),
        (
            png(200, 200) + b"\x00" * (1024 * 1024),
            "me.png",
            "The picture is 1025 KB; the limit is 1 MB",
        ),
        (png(64, 64), "me.png", "is 64 x 64 pixels; it needs at least 96 x 96"),
        (jpeg(2048, 2048), "me.jpg", "may be at most 1024 x 1024"),
        (png(400, 200), "me.png", "crop it to a square"),
        (b"", "me.png", "The file is empty"),
    ],
)
def test_a_bad_picture_is_refused_next_to_the_field_and_nothing_is_written(
    client, session, data, filename, message
):
    response = post(client, picture=upload(data, filename))

    assert response.status_code == 400
    page = text(response)
    field = page.split('name="picture"')[1].split("</label>")[0]
    assert message in field, field
    assert 'value="Jordan"' in page  # what the student typed is kept
    assert written(session) == (0, 0)


def test_a_request_beyond_the_upload_limit_is_refused_on_the_page(client, session):
    response = post(client, picture=upload(b"\x00" * (5 * 1024 * 1024)))

    assert response.status_code == 413
    field = text(response).split('name="picture"')[1].split("</label>")[0]
    assert "larger than 4 MB; the limit is 1 MB" in field
    assert written(session) == (0, 0)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"first_name": ""}, "first_name", "First name is required."),
        ({"first_name": "R2D2"}, "first_name", "may contain letters, spaces, hyphens"),
        ({"last_name": "x" * 51}, "last_name", "Last name is too long"),
        ({"last_name": "李"}, "last_name", "needs at least one letter a-z"),
    ],
)
def test_names_follow_the_wizard_rules(client, session, fields, field, message):
    response = post(client, **fields)

    assert response.status_code == 400
    around = text(response).split(f'name="{field}"')[1].split("</label>")[0]
    assert message in around
    assert written(session) == (0, 0)


@pytest.mark.parametrize("key", ["username", "mailbox_username", "mailboxUsername"])
def test_a_crafted_username_is_refused_with_the_reason_and_nothing_is_written(client, session, key):
    response = post(client, **{key: "jordan.reyes"}, picture=upload(png(200, 200)))

    assert response.status_code == 400
    assert USERNAME_REFUSAL in text(response)
    assert "warmup starts again from zero" in text(response)
    assert written(session) == (0, 0)


def test_a_second_request_is_the_next_revision_and_keeps_the_picture(client, session, student):
    post(client, picture=upload(png(200, 200)))
    session.expire_all()
    first = session.scalars(select(SenderProfile)).one()
    token, sha = first.picture_token, first.picture_sha256

    assert post(client, first_name="Jo").status_code == 303

    session.expire_all()
    row = session.scalars(select(SenderProfile)).one()
    assert (row.revision, row.first_name, row.status) == (2, "Jo", "pending")
    assert (row.picture_token, row.picture_sha256) == (token, sha)
    keys = sorted(session.scalars(select(OutboxMessage.key)))
    pid = student["provision_id"]
    assert keys == [f"sender-profile:{pid}:1", f"sender-profile:{pid}:2"]
    # Saving the same names again, without a picture, starts nothing.
    post(client, first_name="Jo")
    assert written(session) == (1, 2)
    assert "Nothing to change" in text(client.get(URL))


def test_a_new_picture_gets_a_new_address(client, session):
    post(client, picture=upload(png(200, 200)))
    session.expire_all()
    old = session.scalars(select(SenderProfile.picture_token)).one()
    post(client, picture=upload(png(300, 300)))
    session.expire_all()
    new = session.scalars(select(SenderProfile.picture_token)).one()
    assert new != old
    assert client.get(f"/sender-picture?key={old}").status_code == 404


@pytest.mark.parametrize(
    ("status", "error", "said"),
    [
        ("applied", None, "Applied to every mailbox on"),
        ("failed", "Zapmail refused the change: Invalid name", "Failed Zapmail refused the change"),
    ],
)
def test_the_page_says_how_the_last_request_ended(client, session, status, error, said):
    post(client)
    row = session.scalars(select(SenderProfile)).one()
    row.status, row.error = status, error
    if status == "applied":
        row.applied_at = utcnow()
    session.commit()
    assert said in words(client.get(URL))


def test_another_student_never_sees_the_picture_address(client, app, session):
    post(client, picture=upload(png(200, 200)))
    token = session.scalars(select(SenderProfile.picture_token)).one()
    bob = make_user(session, "bob@example.com")
    make_provision(session, bob, status="active")
    session.commit()
    other = app.test_client()
    other.post("/auth/login", data={"email": "bob@example.com", "password": PASSWORD})
    page = other.get(URL).get_data(as_text=True)
    assert token not in page and "Jordan" not in page


def test_a_cancelled_order_shows_the_profile_but_cannot_change_it(client, session, student):
    session.get(Provision, student["provision_id"]).status = "cancelled"
    session.commit()
    assert "can be changed while your order is active" in text(client.get(URL))
    response = post(client)
    assert response.status_code == 409
    assert written(session) == (0, 0)
