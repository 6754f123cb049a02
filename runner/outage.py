"""Say once that a service became unreachable, and once that it is back.

Every bot, the status poll and the market passes of a runner meet the same database outage;
:class:`Outage` turns their many failures into one warning when the first fails and one line
when something succeeds again, with how long it lasted (and the matching ``system:events``
notices, published through the callback the runner gives). Right after the service is back,
connections opened before the outage fail once each as they are used again: failures within
``quiet`` seconds of a recovery are that aftermath, not a new outage (one that lasts is reported
by the first failure after them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

_log = logging.getLogger(__name__)


class Outage:
    """Tracks whether ``name`` (e.g. ``"database"``) is reachable.

    Parameters
    ----------
    name : str
        What is reported on, in the messages and the notices' ``event`` (``{name}_unavailable``,
        ``{name}_recovered``).
    consequence : str
        What happens meanwhile, appended to the warning.
    notice : callable, optional
        ``notice(event, **details)``: publishes a ``system:events`` notice.
    quiet : float
        Seconds after a recovery during which failures are not a new outage.
    clock : callable
        Monotonic seconds.
    """

    def __init__(
        self,
        name: str,
        consequence: str,
        notice: Callable[..., None] | None = None,
        quiet: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.consequence = consequence
        self.notice = notice
        self.quiet = quiet
        self.clock = clock
        self._lock = threading.Lock()
        self.since: float | None = None
        self._recovered_at = -float("inf")
        self.outages = 0

    @property
    def down(self) -> bool:
        """Whether the latest report was a failure."""
        return self.since is not None

    def failed(self, error: str) -> None:
        """Report a failure; the first one since the service was last reachable is logged."""
        with self._lock:
            now = self.clock()
            if self.since is not None or now - self._recovered_at < self.quiet:
                return
            self.since = now
            self.outages += 1
        _log.warning(
            "%s unreachable (%s): %s; retrying until it is back", self.name, error, self.consequence
        )
        if self.notice is not None:
            self.notice(f"{self.name}_unavailable", error=error)

    def succeeded(self) -> None:
        """Report a success; the first one after a failure is logged with the outage's length."""
        with self._lock:
            if self.since is None:
                return
            self._recovered_at = self.clock()
            lasted = self._recovered_at - self.since
            self.since = None
        _log.warning("%s reachable again after %.1f s", self.name, lasted)
        if self.notice is not None:
            self.notice(f"{self.name}_recovered", seconds=round(lasted, 3))
