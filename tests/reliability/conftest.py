"""The fault-injection world: a two-variant endpoint in (patched) moto, the real policy, the JSON store.

Every reliability test drives `routing.controller.Controller` with the real adapters
(SageMakerRouter, CloudWatchMetrics over moto) wrapped where a fault is injected, and checks two
things after the fault: the live endpoint is on a SAFE split (`assert_safe`) and no decision
record is lost (`World.tick` asserts every completed tick appends exactly one record).

Markers (counted by tests/reliability/report.py): `fault` for an injected fault, `bad_input` for a
user mistake that must get a one-line error with exit 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from routing.clock import ManualClock
from routing.controller import Controller
from routing.metrics import CloudWatchMetrics
from routing.model import EndpointLive
from routing.router import SageMakerRouter
from routing.state import JsonFileStateStore
from tests.routing._aws import create_endpoint, feed_split
from toolkit.config import HybridConfig, parse_config
from toolkit.local.server import patched_mock_aws

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
STEPS = [10.0, 50.0, 100.0]
TOTAL_PER_MINUTE = 1200
REGION = "us-east-1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(kind): an injected fault the toolkit must survive")
    config.addinivalue_line("markers", "bad_input(kind): a user mistake answered by a one-line error, exit 2")


# Record accounting for tests/reliability/report.py, counted where every tick runs
# (Controller._run, wrapped by the autouse `ledger` fixture): threads and ticks that raise count
# too. A tick that returns must find its own record in the store; a tick that raises must leave
# its record in the state's outbox (`unrecorded`), and by the end of the test every outbox record
# must be in the log. `lost` counts the ticks no record explains.
LEDGER: dict[str, int] = {"ticks": 0, "records": 0, "lost": 0, "raised": 0}


def count_lost(n: int) -> None:
    LEDGER["lost"] += n


class Crash(BaseException):
    """The process dies here: a BaseException, so nothing in the controller can swallow it."""


def reliability_data(example_data: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    data = example_data
    data["canary"] = {"steps": STEPS, "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    data["state_dir"] = str(state_dir)
    return data


@dataclass
class World:
    """One endpoint in moto, its metrics feed, a manual clock and the controller's state dir."""

    config: HybridConfig
    sm: Any
    cw: Any
    state_dir: Path
    clock: ManualClock
    minute: datetime = T0
    updates: list[dict[str, float]] = field(default_factory=list)  # every weight change that reached AWS

    @property
    def name(self) -> str:
        return self.config.name

    # -- adapters ---------------------------------------------------------------------------------

    def router(self, sm: Any | None = None) -> SageMakerRouter:
        return SageMakerRouter(sm or self.sm, self.name, ("neuron", "gpu"))

    def metrics(self, cw: Any | None = None) -> CloudWatchMetrics:
        return CloudWatchMetrics(cw or self.cw)

    def store(self) -> JsonFileStateStore:
        return JsonFileStateStore(self.state_dir, self.name)

    def controller(self, *, router: Any = None, metrics: Any = None, store: Any = None,
                   clock: Any = None) -> Controller:
        return Controller(self.config, metrics=metrics or self.metrics(), router=router or self.router(),
                          store=store or self.store(), clock=clock or self.clock)

    # -- the world moving -------------------------------------------------------------------------

    def live(self) -> EndpointLive:
        return self.router().describe()

    def feed(self, minutes: int = 1, **kwargs: Any) -> None:
        """Publish `minutes` closed minutes of healthy traffic on the live split, then move the clock."""
        for _ in range(minutes):
            feed_split(self.cw, self.name, self.minute, total=TOTAL_PER_MINUTE, neuron_share=self.share(), **kwargs)
            self.minute += timedelta(minutes=1)
        self.clock.set(self.minute + timedelta(seconds=10))

    def share(self) -> float:
        variants = self.live().variants
        total = sum(v.current_weight for v in variants.values())
        return 100.0 * variants["neuron"].current_weight / total if total else 0.0

    def records(self) -> list[dict[str, Any]]:
        return self.store().records()

    def tick(self, controller: Controller | None = None, command: str | None = None) -> dict[str, Any]:
        """One tick; asserts it appended exactly one record (and returns it)."""
        before = len(self.records())
        ctl = controller or self.controller()
        result = ctl.command(command) if command else ctl.tick()
        after = self.records()
        # A restart first appends the record of a tick that died after saving its state (write-ahead).
        recovered = sum(1 for r in after[before:] if any("appended by the next tick" in n for n in r.get("notes", [])))
        assert len(after) == before + 1 + recovered, f"tick left {len(after) - before} records, expected exactly 1"
        assert after[-1] == result.record
        return result.record

    def start_and_ramp_to(self, step_index: int) -> None:
        """`canary start` then healthy ticks until neuron carries STEPS[step_index]."""
        self.tick(command="start")
        for _ in range(20):
            if self.share() == STEPS[step_index]:
                return
            self.feed()
            self.tick()
        raise AssertionError(f"never reached step {step_index}: at {self.share()}")


def assert_safe(world: World, *, gpu_only: bool = False) -> EndpointLive:
    """The split is one the toolkit could have chosen, gpu keeps its floor, no update left half-done."""
    live = world.live()
    cfg = world.config
    weights = {name: v.desired_weight for name, v in live.variants.items()}
    assert all(w >= 0 for w in weights.values()), weights
    assert sum(weights.values()) > 0, f"no variant carries traffic: {weights}"
    share = 100.0 * weights["neuron"] / sum(weights.values())
    assert share in (0.0, *STEPS), f"neuron share {share} is not 0 or a canary step"
    for name, variant in live.variants.items():
        floor = cfg.variant(name).min_count
        assert variant.desired_instance_count >= floor, f"{name} count {variant.desired_instance_count} < {floor}"
    if gpu_only:
        assert share == 0.0, f"expected all weighted traffic on gpu, neuron has {share}%"
    state = world.store().load()
    if state is not None:
        assert state.intent is None, "a half-done update is still pending in the state"
    return live


def record_updates(sm: Any, sink: list[dict[str, float]]) -> None:
    """Log every UpdateEndpointWeightsAndCapacities that reaches (moto's) AWS into `sink`."""

    pending: list[dict[str, float]] = []
    operation = "sagemaker.UpdateEndpointWeightsAndCapacities"

    def asked(params: dict[str, Any], **_: Any) -> None:
        entries = params["DesiredWeightsAndCapacities"]
        if all("DesiredWeight" in e for e in entries):  # count-only calls are autoscaling, not routing
            pending[:] = [{e["VariantName"]: float(e["DesiredWeight"]) for e in entries}]

    def answered(http_response: Any, **_: Any) -> None:
        if pending and http_response.status_code == 200:  # only calls AWS accepted changed anything
            sink.append(pending.pop())

    sm.meta.events.register(f"provide-client-params.{operation}", asked)
    sm.meta.events.register(f"after-call.{operation}", answered)


def _unwrap(store: Any) -> Any:
    while hasattr(store, "_inner"):
        store = store._inner
    return store


@pytest.fixture(autouse=True)
def ledger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Count every tick at Controller._run (see LEDGER); check every outbox record landed at the end."""
    original = Controller._run
    stores: dict[int, Any] = {}

    def counted(self: Controller, command: str | None, dry_run: bool) -> Any:
        store = _unwrap(self.store)
        stores[id(store)] = store
        LEDGER["ticks"] += 1
        try:
            result = original(self, command, dry_run)
        except BaseException:
            LEDGER["raised"] += 1  # its record must be in the outbox (checked at the end) or never decided
            raise
        tick_id = result.record.get("tick_id")
        if tick_id and hasattr(store, "has_record") and store.has_record(str(tick_id)):
            LEDGER["records"] += 1
        elif not result.stood_aside or result.decision is not None:
            count_lost(1)
        else:
            LEDGER["records"] += 1  # a stand-aside record (lease): appended by the store itself
        return result

    monkeypatch.setattr(Controller, "_run", counted)
    yield
    for store in stores.values():
        try:
            state = store.load()
        except Exception:
            continue
        pending = state.unrecorded if state is not None else None
        if pending and not store.has_record(str(pending.get("tick_id"))):
            count_lost(1)  # a record left in the outbox that no tick delivered


@pytest.fixture
def world(tmp_path: Path, example_data: dict[str, Any]) -> Iterator[World]:
    data = reliability_data(example_data, tmp_path / "state")
    config = parse_config(data)
    with patched_mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        cw = boto3.client("cloudwatch", region_name=REGION)
        create_endpoint(sm, config.name, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        w = World(config=config, sm=sm, cw=cw, state_dir=tmp_path / "state", clock=ManualClock(T0))
        record_updates(sm, w.updates)
        yield w


# ------------------------------------------------------------------------------------------------
# Fault injection around any adapter


class Faulty:
    """Proxy an adapter; `plan[(method, n)] = ("before"|"after", exc)` raises on the n-th call (1-based)."""

    def __init__(self, inner: Any, plan: dict[tuple[str, int], tuple[str, BaseException]] | None = None,
                 hooks: dict[str, Callable[[], None]] | None = None) -> None:
        self._inner = inner
        self._plan = plan or {}
        self._hooks = hooks or {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            n = self.calls[name] = self.calls.get(name, 0) + 1
            if name in self._hooks:
                self._hooks[name]()
            when, error = self._plan.get((name, n), (None, None))
            if when == "before":
                raise error  # type: ignore[misc]
            result = target(*args, **kwargs)
            if when == "after":
                raise error  # type: ignore[misc]
            return result

        return call


def set_status(world: World, status: str, failure_reason: str | None = None) -> None:
    """Put the moto endpoint in a status (as SageMaker would during an update or a failed one)."""
    from moto.sagemaker.models import sagemaker_backends

    for account in sagemaker_backends.values():
        for backend in account.values():
            endpoint = backend.endpoints.get(world.name)
            if endpoint is not None:
                endpoint.endpoint_status = status
                endpoint.failure_reason = failure_reason
                return
    raise AssertionError(f"no endpoint {world.name} in moto")


def ready_to_progress(world: World, complete: bool = True) -> None:
    """At step 1 with its bake complete: the next healthy tick moves to step 2.

    complete=False stops one minute short: the minute that completes the bake is not yet published.
    """
    world.start_and_ramp_to(0)
    for _ in range(2):  # healthy minutes at step 1, judged tick by tick (holding while it bakes)
        world.feed()
        assert world.tick()["action"] == "hold"
    if complete:
        world.feed()  # the minute that completes the bake
