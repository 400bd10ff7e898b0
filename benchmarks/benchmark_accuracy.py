"""How accurately `hybrid benchmark` measures: local contract servers with known fixed delays.

Starts one container-contract server per variant (default neuron 20 ms, gpu 40 ms), runs the
benchmark at several concurrency levels, and prints per level the measured p50/p99 against the
known delay (relative error; the done-when allows 10%) and the cost per 1K against the one
recomputed by hand from the price table and the measured throughput.

    python benchmarks/benchmark_accuracy.py [--neuron-ms 20] [--gpu-ms 40] [--requests 200] [--concurrency 1,4,16]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit.benchmark import HttpTarget, parse_concurrency, run_benchmark
from toolkit.config import load_config
from toolkit.contract_server import ContractServer
from toolkit.pricing import price_per_hour

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neuron-ms", type=float, default=20.0)
    parser.add_argument("--gpu-ms", type=float, default=40.0)
    parser.add_argument("--requests", type=int, default=200, help="per level")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--config", default=str(ROOT / "examples" / "hybrid.yaml"))
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (s)")
    args = parser.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    cfg = load_config(args.config)
    delays = {"neuron": args.neuron_ms, "gpu": args.gpu_ms}
    levels = parse_concurrency(args.concurrency)
    with ContractServer("neuron", f"fixed:{args.neuron_ms:g}") as neuron, \
         ContractServer("gpu", f"fixed:{args.gpu_ms:g}") as gpu:
        targets = {"neuron": HttpTarget(neuron.url), "gpu": HttpTarget(gpu.url)}
        report = run_benchmark(cfg, targets, levels, duration_s=60, max_requests=args.requests,
                               threshold_ms=10 * max(delays.values()))

    print(f"hybrid benchmark accuracy: fixed delays neuron {args.neuron_ms:g} ms, gpu {args.gpu_ms:g} ms, "
          f"{args.requests} requests per level")
    print(f"{'variant':<7} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'err':>7} {'p99 ms':>8} {'err':>7}")
    worst = 0.0
    for name, result in report.variants.items():
        delay = delays[name]
        for lv in result.levels:
            e50 = (lv.p50_ms - delay) / delay
            e99 = (lv.p99_ms - delay) / delay
            worst = max(worst, abs(e50), abs(e99))
            print(f"{name:<7} {lv.concurrency:>4} {lv.throughput_rps:>8.1f} {lv.p50_ms:>8.2f} {e50:>+7.1%} "
                  f"{lv.p99_ms:>8.2f} {e99:>+7.1%}")
    print(f"worst relative error of p50/p99: {worst:.1%} (done-when: <= 10%)")
    for name, result in report.variants.items():
        best = result.best
        price = price_per_hour(result.instance_type, cfg.prices)
        by_hand = price / (best.throughput_rps * 3600) * 1000
        print(f"{name:<7} {result.instance_type:<15} ${price}/h  best c={best.concurrency} "
              f"{best.throughput_rps:.1f} req/s  cost/1K ${result.cost_per_1k:.6f} (by hand ${by_hand:.6f})")


if __name__ == "__main__":
    main()
