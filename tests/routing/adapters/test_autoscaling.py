"""The autoscaling adapter's pure rule: floors from the policy's counts, scale-in per phase."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routing.adapters.autoscaling import SCALE_IN_SUSPENDED_PHASES, VariantScaling, wanted_scaling
from routing.core.model import Phase

scalings = st.builds(
    lambda lo, extra, a, b, c: VariantScaling("gpu", lo, lo + extra, a, b, c),
    st.integers(1, 20), st.integers(0, 20), st.booleans(), st.booleans(), st.booleans(),
)


@given(scalings, st.sampled_from(list(Phase)), st.none() | st.integers(0, 50))
def test_the_wanted_target_is_always_valid_and_only_the_routers_fields_change(current, phase, floor):
    wanted = wanted_scaling(current, phase, floor)
    assert 1 <= wanted.min_capacity <= wanted.max_capacity
    assert wanted.max_capacity >= current.max_capacity  # the ceiling is only ever raised, never cut
    assert wanted.scale_in_suspended == (phase in SCALE_IN_SUSPENDED_PHASES)
    # An operator's own switches are kept as they were.
    assert (wanted.scale_out_suspended, wanted.scheduled_suspended) == (
        current.scale_out_suspended, current.scheduled_suspended)
    if floor is None:
        assert wanted.min_capacity == current.min_capacity
    else:
        assert wanted.min_capacity == max(1, floor)


def test_scale_in_is_suspended_exactly_during_a_ramp_and_a_fallback_episode():
    assert {Phase.RAMPING, Phase.FALLING_BACK, Phase.COOLING_DOWN} == SCALE_IN_SUSPENDED_PHASES
