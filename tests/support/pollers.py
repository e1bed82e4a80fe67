"""A background poller: a daemon thread with its own DB engine, for watching a run from outside."""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine


class BackgroundPoller:
    """Calls ``poll`` every ``every_s`` on a daemon thread until it returns True or the block ends."""

    every_s = 0.1

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> BackgroundPoller:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.engine.dispose()

    def _loop(self) -> None:
        while not self.stop.wait(self.every_s):
            if self.poll():
                return

    def poll(self) -> bool:
        """One look; True ends the polling."""
        raise NotImplementedError
