"""A local HTTP server speaking the SageMaker inference container contract, with known behaviour.

`GET /ping` answers 200 when healthy; `POST /invocations` sleeps a latency drawn from a
configured distribution, fails with a configured probability (HTTP 500), and answers JSON.
Responses carry `X-Amzn-Invoked-Production-Variant` like the SageMaker runtime does, so the
same client code can read who served. `capacity` bounds concurrent work (requests beyond it
queue), which makes latency rise with load the way a real instance's does.

Used by the tests and by `hybrid benchmark --url ...` to try the benchmark without AWS:

    python -m toolkit.contract_server --variant neuron --latency fixed:20 --port 8081
    python -m toolkit.contract_server --variant gpu --latency normal:40,4 --capacity 4 --port 8082

Latency specs: `fixed:MS`, `uniform:LOW,HIGH`, `normal:MEAN,SD` (clipped at 0),
`lognormal:MEDIAN,SIGMA`.

Known behaviours for the benchmark's jitter, first-request and batch-size measurements:

- `cold_ms`: the first request (and, with `idle_s`, the first after that many idle seconds)
  takes this much longer, like a Neuron model's first inference after load;
- `per_item_ms`: a batch of N inputs (a JSON list in `inputs`, or a JSON list body) takes
  `(N - 1) x per_item_ms` longer than one input;
- `jitter_pct` / `jitter_every`: warm requests come in spells of `jitter_every`; every other
  spell is `jitter_pct` percent slower, so P99 measured over windows of that size swings.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from toolkit.errors import UserError

INVOKED_VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"


@dataclass(frozen=True)
class LatencyModel:
    """A latency distribution in milliseconds."""

    kind: str = "fixed"
    a: float = 20.0
    b: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> LatencyModel:
        """`fixed:20`, `uniform:10,30`, `normal:40,4`, `lognormal:20,0.3` (also a bare number = fixed)."""
        text = spec.strip()
        kind, _, args = text.partition(":") if ":" in text else ("fixed", "", text)
        try:
            numbers = [float(x) for x in args.split(",")] if args else []
        except ValueError:
            raise UserError(f"latency {spec!r}: numbers expected, e.g. fixed:20 or normal:40,4") from None
        arity = {"fixed": 1, "uniform": 2, "normal": 2, "lognormal": 2}
        if kind not in arity:
            raise UserError(f"latency {spec!r}: kind must be one of {', '.join(arity)}")
        if len(numbers) != arity[kind] or any(n < 0 for n in numbers):
            raise UserError(f"latency {spec!r}: {kind} takes {arity[kind]} non-negative number(s)")
        if kind == "uniform" and numbers[1] < numbers[0]:
            raise UserError(f"latency {spec!r}: uniform needs LOW <= HIGH")
        return cls(kind, numbers[0], numbers[1] if len(numbers) > 1 else 0.0)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        return self.a * math.exp(rng.gauss(0.0, self.b))  # lognormal: a = median

    def __str__(self) -> str:
        return f"{self.kind}:{self.a:g}" + (f",{self.b:g}" if self.kind != "fixed" else "")


@dataclass
class Behaviour:
    """Known, deterministic deviations from the latency distribution (see the module doc)."""

    cold_ms: float = 0.0
    idle_s: float | None = None
    per_item_ms: float = 0.0
    jitter_pct: float = 0.0
    jitter_every: int = 100

    def validate(self) -> None:
        if self.cold_ms < 0 or self.per_item_ms < 0 or self.jitter_pct < 0:
            raise UserError("cold_ms, per_item_ms and jitter_pct must be >= 0")
        if self.jitter_every < 1:
            raise UserError(f"jitter_every must be >= 1 request, got {self.jitter_every}")
        if self.idle_s is not None and self.idle_s <= 0:
            raise UserError(f"idle_s must be > 0 seconds (or unset), got {self.idle_s}")


def batch_size(body: bytes) -> int:
    """How many inputs a request carries: a JSON list body, or a list under `inputs`; else 1."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return 1
    if isinstance(data, list):
        return max(1, len(data))
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        return max(1, len(data["inputs"]))
    return 1


class ContractServer:
    """One variant's container on 127.0.0.1 (port 0 = a free port). Use as a context manager."""

    def __init__(
        self,
        variant: str = "neuron",
        latency: LatencyModel | str = "fixed:20",
        error_rate: float = 0.0,
        capacity: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        behaviour: Behaviour | None = None,
        clock: Callable[[], float] = time.monotonic,
        model: Any = None,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise UserError(f"error_rate must lie in 0..1, got {error_rate}")
        if capacity is not None and capacity < 1:
            raise UserError(f"capacity must be >= 1 (or unset for unbounded), got {capacity}")
        self.variant = variant
        self.latency = LatencyModel.parse(latency) if isinstance(latency, str) else latency
        self.error_rate = error_rate
        self.capacity = capacity
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(capacity) if capacity else None
        self._sleep = sleep
        self._clock = clock
        self.behaviour = behaviour or Behaviour()
        self.behaviour.validate()
        self.model = model  # e.g. toolkit.toy_model.ToyClassifier: replies with its predictions
        self._last_request_at: float | None = None
        self._warm_count = 0
        self.healthy = True
        self.requests = 0
        self.errors = 0
        self._count_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ContractServer:
        # A short poll interval makes stop() quick (serve_forever checks for shutdown between polls).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"contract-{self.variant}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ContractServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _draw(self, batch: int = 1) -> tuple[float, bool, bool]:
        """(latency ms, fail?, cold?) for one request of `batch` inputs."""
        b = self.behaviour
        with self._rng_lock:
            latency, fail = self.latency.sample(self._rng), self._rng.random() < self.error_rate
            now = self._clock()
            idle = (b.idle_s is not None and self._last_request_at is not None
                    and now - self._last_request_at >= b.idle_s)
            cold = b.cold_ms > 0 and (self._last_request_at is None or idle)
            self._last_request_at = now
            if cold:
                latency += b.cold_ms
            else:
                spell = self._warm_count // b.jitter_every
                self._warm_count += 1
                if spell % 2 == 1:
                    latency *= 1 + b.jitter_pct / 100.0
        return latency + b.per_item_ms * (max(1, batch) - 1), fail, cold

    def finished(self) -> None:
        """Idle time runs from the end of a request (a long request is not idle time)."""
        with self._rng_lock:
            self._last_request_at = self._clock()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the benchmark reuses one connection per worker
            # Headers and body go out in two writes; with Nagle on, the second waits for the
            # client's delayed ACK (~40 ms on Linux) and swamps the latency under test.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks
                return

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header(INVOKED_VARIANT_HEADER, server.variant)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path != "/ping":
                    self._reply(404, {"error": f"unknown path {self.path}"})
                elif server.healthy:
                    self._reply(200, {"status": "healthy", "variant": server.variant})
                else:
                    self._reply(503, {"status": "unhealthy", "variant": server.variant})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path != "/invocations":
                    self._reply(404, {"error": f"unknown path {self.path}"})
                    return
                latency_ms, fail, cold = server._draw(batch_size(body))
                if server._slots is not None:
                    server._slots.acquire()
                try:
                    server._sleep(latency_ms / 1000.0)
                finally:
                    if server._slots is not None:
                        server._slots.release()
                    server.finished()
                with server._count_lock:
                    server.requests += 1
                    server.errors += fail
                if fail:
                    self._reply(500, {"error": "simulated model error", "variant": server.variant})
                else:
                    if server.model is not None:
                        from toolkit.toy_model import answer

                        try:
                            self._reply(200, answer(server.model, body))
                        except UserError as error:
                            self._reply(400, {"error": str(error)})
                        return
                    reply = {"variant": server.variant, "latency_ms": latency_ms, "bytes": len(body)}
                    if server.behaviour != Behaviour():  # the plain reply stays as it was
                        reply.update(batch=batch_size(body), cold=cold)
                    self._reply(200, reply)

        return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local SageMaker container-contract server with known latency.")
    parser.add_argument("--variant", default="neuron")
    parser.add_argument("--latency", default="fixed:20", help="fixed:MS | uniform:LO,HI | normal:MEAN,SD | lognormal:MEDIAN,SIGMA")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--capacity", type=int, default=None, help="concurrent requests served; more queue")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cold-ms", type=float, default=0.0, help="extra latency of the first request (and after idle)")
    parser.add_argument("--idle-s", type=float, default=None, help="idle seconds after which a request is cold again")
    parser.add_argument("--per-item-ms", type=float, default=0.0, help="extra latency per input beyond the first")
    parser.add_argument("--jitter-pct", type=float, default=0.0, help="every other spell of requests is this %% slower")
    parser.add_argument("--jitter-every", type=int, default=100, help="requests per spell")
    parser.add_argument("--model", choices=["classifier"], default=None,
                        help="serve a small deterministic text classifier (numpy); the neuron variant casts to bf16")
    parser.add_argument("--perturb", type=float, default=0.0, help="neuron model: weight noise (larger disagreement)")
    args = parser.parse_args(argv)
    behaviour = Behaviour(args.cold_ms, args.idle_s, args.per_item_ms, args.jitter_pct, args.jitter_every)
    try:
        model = None
        if args.model:
            from toolkit.toy_model import ToyClassifier

            model = ToyClassifier("neuron" if args.variant == "neuron" else "gpu", args.perturb)
        server = ContractServer(args.variant, args.latency, args.error_rate, args.capacity, args.host, args.port,
                                args.seed, behaviour=behaviour, model=model)
    except UserError as error:
        parser.error(str(error))
    print(f"{args.variant}: {server.url} (latency {server.latency}, error rate {args.error_rate:g}); Ctrl-C stops")
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
