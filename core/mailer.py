"""Send one email: over SMTP when a host is configured, else into the local outbox folder.

The outbox (``<instance>/outbox/*.eml``) is the demo's mail server: every email the product
would send lands there as a file any mail client opens. Both senders take a stable
``Message-ID`` derived from the notification key, so a resend after a crash is recognisable.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from dataclasses import field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from core.settings import Settings

SMTP_TIMEOUT_S = 20.0
OUTBOX = "outbox"


class MailError(Exception):
    """An email could not be handed over (the notification stays unsent for the next try)."""


@dataclass(frozen=True)
class Email:
    """One email to hand over; ``key`` identifies it across retries."""

    key: str
    recipient: str
    subject: str
    body: str


class Mailer(Protocol):
    """Something that hands an email over for delivery."""

    def send(self, email: Email) -> None:
        """Hand ``email`` over, or raise MailError."""


def build_message(email: Email, sender: str) -> EmailMessage:
    """Render an email as a MIME message with a Message-ID stable across resends."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.recipient
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{_digest(email.key)}@outbound.notifications>"
    message.set_content(email.body)
    return message


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class SmtpMailer:
    """Send through an SMTP server (STARTTLS and login when configured)."""

    host: str
    port: int
    sender: str
    username: str | None = None
    # repr=False: the password must never reach a log line through the dataclass's repr.
    password: str | None = field(default=None, repr=False)
    starttls: bool = True

    def send(self, email: Email) -> None:
        """Send ``email``; any SMTP or network error becomes MailError (no secret in it)."""
        message = build_message(email, self.sender)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username and self.password:
                    smtp.login(self.username, self.password)
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            # smtplib's messages carry the server's reply, never our password.
            raise MailError(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc


@dataclass
class OutboxMailer:
    """Write each email as ``<folder>/<id>.eml``; an email already there is not written again."""

    folder: Path
    sender: str

    def send(self, email: Email) -> None:
        """Write ``email`` to the outbox atomically (a half-written file never appears)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{_file_stem(email)}.eml"
        data = bytes(build_message(email, self.sender))
        handle, temp = tempfile.mkstemp(dir=self.folder, prefix=".sending-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            # link() refuses to replace: a resend after a crash finds the file and stops there.
            os.link(temp, target)
        except FileExistsError:
            pass
        except OSError as exc:
            raise MailError(f"outbox {self.folder}: {exc}") from exc
        finally:
            Path(temp).unlink(missing_ok=True)


def _file_stem(email: Email) -> str:
    readable = re.sub(r"[^A-Za-z0-9]+", "-", email.key).strip("-")[:80]
    return f"{readable}-{_digest(email.key)[:12]}"


def mailer_from_settings(settings: Settings) -> Mailer:
    """The SMTP sender when ``APP_SMTP_HOST`` is set, else the outbox under the instance dir."""
    if settings.smtp_host:
        return SmtpMailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
        )
    return OutboxMailer(folder=settings.instance_dir / OUTBOX, sender=settings.smtp_from)
