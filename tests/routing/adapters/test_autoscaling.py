"""The autoscaling adapter's pure rule: floors from the policy's counts, scale-in per phase."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routing.adapters.autoscaling import (
    GPU_SCALE_IN_SUSPENDED_PHASES,
    SCALE_IN_SUSPENDED_PHASES,
    VariantScaling,
    scale_in_suspended,
    wanted_scaling,
)
from routing.core.model import Phase

scalings = st.builds(
    lambda variant, lo, extra, a, b, c: VariantScaling(variant, lo, lo + extra, a, b, c),
    st.sampled_from(["neuron", "gpu"]), st.integers(1, 20), st.integers(0, 20), st.booleans(), st.booleans(),
    st.booleans(),
)


@given(scalings, st.sampled_from(list(Phase)), st.none() | st.integers(0, 50))
def test_the_wanted_target_is_always_valid_and_only_the_routers_fields_change(current, phase, floor):
    wanted = wanted_scaling(current, phase, floor)
    assert 1 <= wanted.min_capacity <= wanted.max_capacity
    assert wanted.max_capacity >= current.max_capacity  # the ceiling is only ever raised, never cut
    assert wanted.scale_in_suspended == scale_in_suspended(current.variant, phase)
    # An operator's own switches are kept as they were.
    assert (wanted.scale_out_suspended, wanted.scheduled_suspended) == (
        current.scale_out_suspended, current.scheduled_suspended)
    if floor is None:
        assert wanted.min_capacity == current.min_capacity
    else:
        assert wanted.min_capacity == max(1, floor)


def test_scale_in_is_suspended_exactly_during_a_ramp_and_a_fallback_episode():
    assert {Phase.RAMPING, Phase.FALLING_BACK, Phase.COOLING_DOWN} == SCALE_IN_SUSPENDED_PHASES
    assert {Phase.FALLING_BACK, Phase.COOLING_DOWN} == GPU_SCALE_IN_SUSPENDED_PHASES  # gpu is the ramp's donor
    assert scale_in_suspended("neuron", Phase.RAMPING) and not scale_in_suspended("gpu", Phase.RAMPING)


@given(scalings, st.sampled_from(list(Phase)), st.none() | st.integers(0, 50), st.integers(1, 50), st.integers(1, 5))
def test_where_scale_in_is_allowed_a_floor_asking_no_more_than_there_is_goes_back_to_min_count(
        current, phase, floor, desired, base):
    wanted = wanted_scaling(current, phase, floor, desired, base)
    assert 1 <= wanted.min_capacity <= wanted.max_capacity
    if scale_in_suspended(current.variant, phase):
        # A ramp or a fallback keeps what it asked for (as without a base).
        assert wanted == wanted_scaling(current, phase, floor)
    elif floor is not None and floor > desired:
        assert wanted.min_capacity == max(1, floor)  # an ask for more: autoscaling scales out to it
    else:
        assert wanted.min_capacity == base  # released: a peak's count is not kept as the floor forever


def test_a_peak_count_is_not_kept_as_the_floor_once_holding():
    peak = VariantScaling("neuron", 5, 6)
    assert wanted_scaling(peak, Phase.HOLDING, 5, desired=5, base=1).min_capacity == 1
    assert wanted_scaling(peak, Phase.RAMPING, 5, desired=5, base=1).min_capacity == 5
