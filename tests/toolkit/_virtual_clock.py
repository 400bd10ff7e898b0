"""A clock for load tests against contract servers: time moves only when something sleeps.

The servers' delays and the load generator's waits call `sleep`; transport and scheduling take no
time, so latency figures are exact and tests need no timing tolerance.
"""

from __future__ import annotations


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
