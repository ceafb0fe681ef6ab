"""Timer schedules: NCRONTAB (``{second} {minute} {hour} {day} {month} {dow}``, or the five
fields without seconds) or a ``hh:mm:ss`` interval, evaluated in UTC.

The Functions timer trigger documents six-field NCRONTAB
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions);
its host also takes five fields, as cron without seconds (the storage extension's
``CronSchedule.HasSeconds`` counts the fields: five means no seconds field), so five-field
expressions run at second 0.

Fields take ``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n`` / ``a-b/n``;
months and days of week also take English three-letter names (Sunday is 0). As in NCrontab,
a time must match both the day-of-month and the day-of-week fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from shared.errors import ScheduleError
from shared.host.config import parse_timespan

__all__ = ["Schedule", "parse_schedule"]

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_FIELDS = (
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)


def _small_number(text: str) -> bool:
    """ASCII digits only, and short (``str.isdigit`` alone takes '²' and 5,000-digit runs)."""
    return text.isascii() and text.isdigit() and len(text) <= 4


def _value(text: str, low: int, names: list[str] | None, where: str) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + low
    if not _small_number(text):
        raise ScheduleError(where, f"{text!r} is not a number")
    return int(text)


def _field(
    text: str, name: str, low: int, high: int, names: list[str] | None, key: str
) -> frozenset[int]:
    where = f"{key} ({name} field)"
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not _small_number(step_text) or int(step_text) < 1:
                raise ScheduleError(where, f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, low, names, where), _value(last, low, names, where)
        else:
            start = _value(base, low, names, where)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ScheduleError(where, f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """When a timer fires; :meth:`next_after` gives the next occurrence (UTC)."""

    expression: str
    interval: float | None = None
    fields: tuple[frozenset[int], ...] = ()
    key: str = "schedule"

    def next_after(self, moment: datetime) -> datetime:
        moment = moment.astimezone(timezone.utc)
        if self.interval is not None:
            return moment + timedelta(seconds=self.interval)
        seconds, minutes, hours, days, months, weekdays = self.fields
        t = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + timedelta(days=366 * 5)
        while t <= limit:
            if t.month not in months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            if t.day not in days or (t.weekday() + 1) % 7 not in weekdays:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
                continue
            if t.second not in seconds:
                t += timedelta(seconds=1)
                continue
            return t
        raise ScheduleError(self.key, f"{self.expression!r} never fires")


def parse_schedule(expression: str, *, key: str = "schedule") -> Schedule:
    """Parse an NCRONTAB expression or a ``hh:mm:ss`` interval; errors name ``key``."""
    text = expression.strip()
    if ":" in text and " " not in text:
        interval = parse_timespan(key, text)
        if interval is None or interval <= 0:
            raise ScheduleError(key, f"{expression!r}: an interval must be positive")
        return Schedule(expression=text, interval=interval, key=key)
    parts = text.split()
    if len(parts) == 5:  # cron without seconds: runs at second 0
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise ScheduleError(
            key,
            f"{expression!r} has {len(parts)} fields: NCRONTAB needs six "
            "({second} {minute} {hour} {day} {month} {day-of-week}), e.g. '0 */5 * * * *', "
            "or five without the seconds",
        )
    fields = tuple(
        _field(part, name, low, high, names, key)
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
    )
    return Schedule(expression=text, fields=fields, key=key)
