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

    def _draw(self) -> tuple[float, bool]:
        with self._rng_lock:
            return self.latency.sample(self._rng), self._rng.random() < self.error_rate

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the benchmark reuses one connection per worker
            # Headers and body go out in two writes; with Nagle on, the second waits for the
            # client's delayed ACK (~40 ms on Linux) and swamps the latency under test.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks
                return

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
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
                latency_ms, fail = server._draw()
                if server._slots is not None:
                    server._slots.acquire()
                try:
                    server._sleep(latency_ms / 1000.0)
                finally:
                    if server._slots is not None:
                        server._slots.release()
                with server._count_lock:
                    server.requests += 1
                    server.errors += fail
                if fail:
                    self._reply(500, {"error": "simulated model error", "variant": server.variant})
                else:
                    self._reply(200, {"variant": server.variant, "latency_ms": latency_ms, "bytes": len(body)})

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
    args = parser.parse_args(argv)
    server = ContractServer(args.variant, args.latency, args.error_rate, args.capacity, args.host, args.port, args.seed)
    print(f"{args.variant}: {server.url} (latency {server.latency}, error rate {args.error_rate:g}); Ctrl-C stops")
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
