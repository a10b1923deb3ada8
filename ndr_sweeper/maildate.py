"""Pure: a Date header value as an aware datetime, the way the standard library reads it.

``email.utils.parsedate_to_datetime`` costs ~25 us a value, and a first sweep reads the Date of
every Sent message (10,000 at a time) and of every bounce's original.  Nearly all of them are
written the one way RFC 5322 recommends ("Thu, 3 Dec 2026 11:22:29 +0000"): those are read
with one regex, everything else by the standard library, with the same answer
(``tests/test_maildate.py`` compares the two on every Date in the corpus and on generated
values).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_USUAL = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
    r"Oct|Nov|Dec) ([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)
_ZONES: dict[str, timezone] = {}


def mail_date(value: str | None) -> datetime | None:
    """The instant a Date value names (a naive one, "-0000", taken as UTC); None when it
    names none.  Reads at most 200 characters of it."""
    if not value:
        return None
    value = value[:200]
    m = _USUAL.fullmatch(value.strip())
    if m is not None:
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        zone = sign + zh + zm
        try:
            tz = _ZONES.get(zone)
            if tz is None:
                minutes = int(zh) * 60 + int(zm)
                tz = (
                    UTC
                    if minutes == 0
                    else timezone(timedelta(minutes=-minutes if sign == "-" else minutes))
                )
                if len(_ZONES) < 256:
                    _ZONES[zone] = tz
            return datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), 0, tz)
        except ValueError:
            pass  # 31 Feb, 25:00, +9900: the standard library says what it makes of it
    return _standard(value)


def _standard(value: str) -> datetime | None:
    """mail_date by the standard library alone."""
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
