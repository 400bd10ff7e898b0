"""Old path of the policy test world, kept for one release: it lives in tests/routing/core/policy_world.py."""

from tests.routing.core.policy_world import *  # noqa: F403
from tests.routing.core.policy_world import MINUTE, T0, Behaviour, World, make_config  # noqa: F401
