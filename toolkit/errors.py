"""Error kinds and the CLI exit codes they map to (one place, so every command agrees).

0 ok / progressed / held, 1 a failed or rolled-back canary, 2 bad input, 3 AWS errors,
130 interrupted (Ctrl-C: 128 + SIGINT, what shells report).
"""

from __future__ import annotations

# Defined in routing/core/errors.py (the pure policy raises UserError too); re-exported here.
from routing.core.errors import EXIT_AWS, EXIT_BAD_INPUT, EXIT_OK, EXIT_ROLLED_BACK, HybridError, UserError

EXIT_INTERRUPTED = 130

__all__ = ["EXIT_AWS", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_ROLLED_BACK", "AwsError", "HybridError",
           "MissingDependencyError", "UserError"]


class AwsError(HybridError):
    """AWS refused or failed a call; the message names the call and AWS's own reason."""

    exit_code = EXIT_AWS


class MissingDependencyError(UserError):
    """An optional dependency (torch-neuronx, the CDK, matplotlib) is not installed here."""
