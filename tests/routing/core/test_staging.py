"""One request per tick toward a target: traffic first toward gpu, capacity first toward neuron."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routing.model import EndpointLive, Target, VariantLive
from routing.staging import next_update


def live(neuron_weight: float, neuron_count: int, gpu_count: int) -> EndpointLive:
    def variant(name: str, weight: float, count: int) -> VariantLive:
        return VariantLive(name, "ml.x", weight, weight, count, count)

    return EndpointLive("ep", "InService", {
        "neuron": variant("neuron", neuron_weight, neuron_count),
        "gpu": variant("gpu", 100.0 - neuron_weight, gpu_count),
    })


def test_fallback_sends_weights_alone_first():
    update = next_update(live(60, 3, 1), Target({"neuron": 0.0, "gpu": 100.0}, {"neuron": 3, "gpu": 4}))
    assert update is not None and dict(update.weights) == {"neuron": 0.0, "gpu": 100.0} and not update.counts


def test_canary_step_adds_neuron_capacity_before_its_traffic():
    update = next_update(live(10, 1, 3), Target({"neuron": 30.0, "gpu": 70.0}, {"neuron": 2, "gpu": 3}))
    assert update is not None and dict(update.counts) == {"neuron": 2} and not update.weights


def test_only_one_variant_capacity_per_request_gpu_first():
    update = next_update(live(50, 1, 1), Target({"neuron": 50.0, "gpu": 50.0}, {"neuron": 2, "gpu": 2}))
    assert update is not None and dict(update.counts) == {"gpu": 2}


def test_nothing_to_send_when_the_endpoint_already_asks_for_the_target():
    assert next_update(live(30, 2, 2), Target({"neuron": 30.0, "gpu": 70.0}, {"neuron": 2, "gpu": 2})) is None


def test_relative_weights_that_mean_the_same_split_need_no_update():
    assert next_update(live(30, 2, 2), Target({"neuron": 3.0, "gpu": 7.0}, {})) is None


@given(
    st.floats(0, 100), st.integers(1, 8), st.integers(1, 8),
    st.floats(0, 100), st.integers(1, 8), st.integers(1, 8),
)
def test_applying_stages_reaches_any_target_within_three_requests(nw, nc, gc, tw, tn, tg):
    """Weights + two counts: at most three requests, each with weights alone or one count alone."""
    state = {"w": nw, "n": nc, "g": gc}
    target = Target({"neuron": tw, "gpu": 100.0 - tw}, {"neuron": tn, "gpu": tg})
    for _ in range(3):
        update = next_update(live(state["w"], state["n"], state["g"]), target)
        if update is None:
            break
        assert bool(update.weights) != bool(update.counts) and len(update.counts) <= 1
        if update.weights:
            state["w"] = update.weights["neuron"]
        state["n"] = update.counts.get("neuron", state["n"])
        state["g"] = update.counts.get("gpu", state["g"])
    assert next_update(live(state["w"], state["n"], state["g"]), target) is None
