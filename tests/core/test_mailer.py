"""The email senders: SMTP against a real local server, and the demo's outbox folder."""

from __future__ import annotations

from email import message_from_bytes
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.mailer import Email
from core.mailer import MailError
from core.mailer import OutboxMailer
from core.mailer import SmtpMailer
from core.mailer import mailer_from_settings
from core.settings import Settings
from tests.support.smtp import smtp_server

EMAIL = Email(key="provision-active:7", recipient="tim@student.test", subject="Ready", body="Hi")


def test_smtp_sends_a_message_with_a_message_id_stable_across_resends() -> None:
    with smtp_server() as (server, port):
        mailer = SmtpMailer(host="127.0.0.1", port=port, sender="ops@x.test", starttls=False)
        mailer.send(EMAIL)
        mailer.send(EMAIL)

    first, second = server.received
    assert (first["To"], first["From"], first["Subject"]) == (
        "tim@student.test",
        "ops@x.test",
        "Ready",
    )
    assert first.get_payload().strip() == "Hi"
    assert first["Message-ID"] == second["Message-ID"]  # a resend is recognisable as one


def test_smtp_refusal_and_unreachable_server_raise_mail_error() -> None:
    with smtp_server(refuse="451 4.3.0 try again later") as (_server, port):
        mailer = SmtpMailer(host="127.0.0.1", port=port, sender="ops@x.test", starttls=False)
        with pytest.raises(MailError, match="451"):
            mailer.send(EMAIL)
    with pytest.raises(MailError):
        mailer.send(EMAIL)  # the server is gone


def test_smtp_password_stays_out_of_repr_and_errors(tmp_path: Path) -> None:
    settings = Settings(
        env="test",
        instance_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=1,
        smtp_username="mailer",
        smtp_password=SecretStr("hunter2-smtp"),
        _env_file=None,
    )
    mailer = mailer_from_settings(settings)
    assert isinstance(mailer, SmtpMailer)
    assert "hunter2" not in repr(mailer)
    with pytest.raises(MailError) as caught:
        mailer.send(EMAIL)
    assert "hunter2" not in str(caught.value)


def test_without_a_host_emails_land_in_the_outbox_once(tmp_path: Path) -> None:
    mailer = mailer_from_settings(Settings(env="test", instance_dir=tmp_path, _env_file=None))
    assert isinstance(mailer, OutboxMailer)

    mailer.send(EMAIL)
    mailer.send(EMAIL)  # a resend after a crash: the file is already there
    mailer.send(Email(key="other", recipient="a@b.test", subject="Other", body="x"))

    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temp files left behind
    subjects = {message_from_bytes(f.read_bytes())["Subject"] for f in files}
    assert subjects == {"Ready", "Other"}
