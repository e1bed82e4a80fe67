"""A real SMTP server on loopback (aiosmtpd) that records what it accepts, or refuses on demand."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class RecordingHandler:
    """Accepts every email (after ``delay_s``) unless ``refuse`` holds an SMTP error reply."""

    delay_s: float = 0.0
    refuse: str | None = None
    received: list[Message] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        """aiosmtpd hook: record the message, or answer the configured refusal."""
        if self.refuse:
            return self.refuse
        if self.delay_s:
            time.sleep(self.delay_s)  # widen the window in which two senders could overlap
        with self._lock:
            self.received.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server(**handler_options: Any) -> Iterator[tuple[RecordingHandler, int]]:
    """Run a recording SMTP server on 127.0.0.1; yield its handler and port."""
    handler = RecordingHandler(**handler_options)
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
