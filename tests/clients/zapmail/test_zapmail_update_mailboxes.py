"""ZapmailClient.update_mailboxes: the documented PUT /v2/mailboxes body, errors, the read side."""

from __future__ import annotations

import pydantic
import pytest

from clients.zapmail import ZapmailBadRequestError
from clients.zapmail import ZapmailClient
from clients.zapmail import ZapmailServerError
from clients.zapmail.models import MailboxUpdate

KEY = "zm-key-0123456789abcdef"
PICTURE = "https://portal.example/sender-picture?key=k1"


@pytest.fixture
def zm(fake):
    with ZapmailClient(KEY, base_url="https://zm.test/api", transport=fake.transport) as client:
        yield client.for_workspace("ws-7")


def test_update_sends_mailbox_data_with_the_picture_only_when_given(zm, fake, reply):
    fake.on("PUT", "/v2/mailboxes", reply(200, {"status": 200, "message": "Updated", "data": None}))

    message = zm.update_mailboxes(
        [
            MailboxUpdate(
                mailbox_id="m-1",
                first_name="Jordan",
                last_name="Reyes",
                username="jordan",
                profile_picture=PICTURE,
            ),
            {"mailbox_id": "m-2", "first_name": "Jordan", "last_name": "Reyes", "username": "jr"},
        ]
    )

    assert message == "Updated"
    request = fake.last("/v2/mailboxes")
    assert request.method == "PUT" and request.headers["x-workspace-key"] == "ws-7"
    assert fake.body("/v2/mailboxes") == {
        "mailboxData": [
            {
                "mailboxId": "m-1",
                "firstName": "Jordan",
                "lastName": "Reyes",
                "username": "jordan",
                "profilePicture": PICTURE,
            },
            {"mailboxId": "m-2", "firstName": "Jordan", "lastName": "Reyes", "username": "jr"},
        ]
    }


def test_update_needs_entries_with_a_username_and_no_unknown_fields(zm, fake):
    with pytest.raises(ValueError, match="at least one mailbox"):
        zm.update_mailboxes([])
    with pytest.raises(pydantic.ValidationError):
        zm.update_mailboxes([{"mailbox_id": "m-1", "first_name": "A", "last_name": "B"}])
    with pytest.raises(pydantic.ValidationError):
        zm.update_mailboxes(
            [
                {
                    "mailbox_id": "m-1",
                    "first_name": "A",
                    "last_name": "B",
                    "username": "a",
                    "signature": "x",
                }
            ]
        )
    assert fake.requests == []


def test_update_errors_are_classified(zm, fake, reply):
    fake.on(
        "PUT",
        "/v2/mailboxes",
        reply(400, {"status": 400, "message": "Invalid username", "errorId": "e-1"}),
        reply(503, {"status": 503, "message": "Unavailable"}),
    )
    entry = {"mailbox_id": "m-1", "first_name": "A", "last_name": "B", "username": "a"}
    with pytest.raises(ZapmailBadRequestError) as refused:
        zm.update_mailboxes([entry])
    assert not refused.value.retryable
    with pytest.raises(ZapmailServerError) as down:
        zm.update_mailboxes([entry])
    assert down.value.retryable


def test_listed_mailboxes_carry_their_profile_picture(zm, fake, reply):
    page = {
        "status": 200,
        "data": {
            "totalPages": 1,
            "domains": [
                {
                    "id": "d-1",
                    "domain": "acme.com",
                    "mailboxes": [
                        {"id": "m-1", "username": "tim", "profilePicture": PICTURE},
                        {"id": "m-2", "username": "ann", "profilePicture": None},
                    ],
                }
            ],
        },
    }
    fake.on("GET", "/v2/mailboxes/list", reply(200, page))
    assert [m.profile_picture for m in zm.iter_mailboxes()] == [PICTURE, None]
