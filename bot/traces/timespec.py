"""Points in time as people type them on the command line: dates, ISO datetimes, or ages.

    parse_moment("2026-05-01")                 # local midnight, aware
    parse_moment("2026-05-01", end=True)       # local midnight of the next day (the day is included)
    parse_moment("2026-05-01T09:30:00Z")       # as written
    parse_moment("7d")                         # seven days ago (also 30m, 24h, 2w)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

__all__ = ["parse_moment", "local_time"]

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|min|h|d|w)$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_moment(text: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """An aware datetime for ``text``: ``YYYY-MM-DD``, an ISO datetime (local time unless it
    names its offset), or an age such as ``30m``, ``24h``, ``7d``, ``2w`` (that long before now).

    With ``end`` (an upper bound), a bare date means the end of that day, so ``--since D
    --until D`` is the whole day D. Raises ValueError with the accepted forms.
    """
    text = text.strip()
    age = _AGE.match(text)
    if age:
        now = now or datetime.now(timezone.utc)
        return now - timedelta(seconds=float(age.group(1)) * _UNIT_SECONDS[age.group(2).lower()])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: use YYYY-MM-DD, an ISO datetime (2026-05-01T09:30) or an age (30m, 24h, 7d, 2w)"
        ) from None
    if end and _DATE.match(text):
        moment += timedelta(days=1)
    return moment if moment.tzinfo else moment.astimezone()  # naive: local time


def local_time(stored: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored time (naive UTC) in the local time zone, formatted; "-" for None."""
    if stored is None:
        return "-"
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=timezone.utc)
    return stored.astimezone().strftime(fmt)
