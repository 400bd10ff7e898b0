"""HybridClient routing overhead per request, against a raw `invoke_endpoint` on the same stub.

Both paths call one in-memory stub runtime client (no network, no botocore serialization), so
the difference is what HybridClient adds: payload length estimate, breaker admission, budget and
counter updates under the lock, response parsing. Goal: under 50 microseconds per request.

    python benchmarks/client_overhead.py [--requests 20000] [--threads 1]

Prints the figures; asserts nothing (speed is measured here, never in tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routing.client import HybridClient

ENDPOINT = "bert-classifier"
PAYLOAD = {"inputs": "The quick brown fox jumps over the lazy dog and keeps running through the field."}
GOAL_US = 50.0


class _Body:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class StubRuntime:
    """Answers like sagemaker-runtime's InvokeEndpoint, instantly."""

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        return {
            "Body": _Body(b'{"label": "POSITIVE", "score": 0.99}'),
            "ContentType": "application/json",
            "InvokedProductionVariant": params.get("TargetVariant", "neuron"),
        }


def per_request_us(fn: Any, requests: int, threads: int) -> float:
    """Wall time per request in microseconds (across `threads` threads sharing one client)."""
    per_thread = requests // threads

    def loop() -> None:
        for _ in range(per_thread):
            fn()

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return (time.perf_counter() - start) / (per_thread * threads) * 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    stub = StubRuntime()
    # Metrics on, flushed to a stub CloudWatch: publishing is part of the per-request cost.
    cloudwatch = type("StubCloudWatch", (), {"put_metric_data": lambda self, **kw: {}})()
    client = HybridClient(ENDPOINT, runtime_client=stub, cloudwatch_client=cloudwatch, metrics_flush_seconds=1.0)
    body = json.dumps(PAYLOAD).encode()
    long_payload = {"inputs": " ".join(["word"] * 300)}

    def raw() -> None:
        response = stub.invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="application/json")
        response["Body"].read()

    def hybrid_dict() -> None:
        client.invoke(PAYLOAD)

    def hybrid_bytes() -> None:
        client.invoke(body)

    def hybrid_long() -> None:
        client.invoke(long_payload)

    figures: dict[str, float] = {}
    for name, fn in (("raw", raw), ("hybrid_dict", hybrid_dict), ("hybrid_bytes", hybrid_bytes),
                     ("hybrid_long_to_gpu", hybrid_long)):
        per_request_us(fn, min(args.requests, 2000), args.threads)  # warm up
        figures[name] = statistics.median(per_request_us(fn, args.requests, args.threads) for _ in range(args.repeats))
    client.close()

    print(f"HybridClient overhead ({args.requests} requests x {args.repeats} repeats, {args.threads} thread(s), "
          f"median of repeats; goal < {GOAL_US:g} us)")
    print(f"  raw invoke_endpoint on stub        {figures['raw']:8.2f} us/request")
    for name, label in (("hybrid_dict", "dict payload (json.dumps + parse)"),
                        ("hybrid_bytes", "bytes payload (parse only)"),
                        ("hybrid_long_to_gpu", "long payload -> TargetVariant=gpu")):
        overhead = figures[name] - figures["raw"]
        verdict = "ok" if overhead < GOAL_US else "OVER GOAL"
        print(f"  HybridClient.invoke, {label:<34} {figures[name]:8.2f} us/request  "
              f"overhead {overhead:7.2f} us  [{verdict}]")
    return figures


if __name__ == "__main__":
    main()
