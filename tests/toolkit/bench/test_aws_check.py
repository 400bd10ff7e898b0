"""The bench's embedded-AWS run of `hybrid` measures the same thing as the in-memory run."""

from __future__ import annotations

from toolkit.bench.harness import aws_comparison, run_hybrid_aws, run_policy


def test_embedded_aws_run_agrees_with_the_in_memory_run_for_the_same_seed(make_setup):
    setup = make_setup(duration_minutes=14, traffic={"rps": 20}, canary_start_minute=2,
                       faults=[{"minute": 9, "variant": "neuron", "kind": "errors", "magnitude": 0.3,
                                "duration_minutes": 3}])
    memory = run_policy(setup, "hybrid")
    aws = run_hybrid_aws(setup)
    assert aws.mode == "embedded-aws" and memory.mode == "in-memory"
    assert memory.update_calls > 0  # the canary moved: the comparison covers real updates
    for figure in ("requests", "cost", "requests_over_slo", "errors", "rollbacks", "minutes_to_fallback",
                   "metrics_calls", "update_calls"):
        assert getattr(aws, figure) == getattr(memory, figure), figure
    assert aws.max_metrics_calls_per_tick <= 1 and aws.max_update_calls_per_tick <= 1
    [check] = aws_comparison([memory, aws])
    assert check["agree"] is True
