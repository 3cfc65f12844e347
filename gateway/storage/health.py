"""The one warning policy for a storage backend that keeps failing: a line when it starts, a
line per interval while it lasts, a line when it is over.

The flag watcher retries every fraction of a second and the report publisher every second; one
line per retry would drown the log, so each of them keeps a ``StoreHealth``::

    health = StoreHealth("file:var/flags.json", subject="flags", action="keeping the last state")
    health.failed("not valid JSON")   # flags.store_unavailable, at most once per interval
    health.recovered()                # flags.store_available, once, when it answers again
"""

from __future__ import annotations

import time

import structlog


class StoreHealth:
    """Logs ``<subject>.store_unavailable`` at most once per ``interval`` while a store keeps
    failing, and ``<subject>.store_available`` once when it answers again. ``action`` says what
    the caller does meanwhile, for the operator reading the warning."""

    def __init__(self, store: str, *, subject: str, action: str, interval: float = 30.0) -> None:
        self.store = store
        self.subject = subject
        self.action = action
        self.interval = interval
        self._log = structlog.get_logger(f"gateway.{subject}")
        self._last_warning: float | None = None
        self._failing = False

    @property
    def failing(self) -> bool:
        return self._failing

    def failed(self, reason: str) -> None:
        self._failing = True
        now = time.monotonic()
        if self._last_warning is None or now - self._last_warning >= self.interval:
            self._last_warning = now
            self._log.warning(
                f"{self.subject}.store_unavailable",
                store=self.store,
                reason=reason,
                action=self.action,
            )

    def recovered(self) -> None:
        if self._failing:
            self._failing = False
            self._last_warning = None
            self._log.info(f"{self.subject}.store_available", store=self.store)
