"""Clocks: the controller never reads the time itself, so tests and the simulator can drive it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    """Wall-clock UTC time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A settable clock for tests, the demo and the simulator: time moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start or datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _aware(when)

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0) -> datetime:
        self._now = self._now + timedelta(seconds=seconds, minutes=minutes)
        return self._now


def _aware(when: datetime) -> datetime:
    # Naive datetimes are taken as UTC: every time in routing/ is timezone-aware UTC.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """ISO 8601 (`2026-01-01T10:00:00Z` or with offset) to aware UTC; used by `--now` / HYBRID_NOW."""
    return _aware(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
