"""Error kinds and the CLI exit codes they map to (one place, so every command agrees).

0 ok / progressed / held, 1 a failed or rolled-back canary, 2 bad input, 3 AWS errors,
130 interrupted (Ctrl-C: 128 + SIGINT, what shells report).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_BAD_INPUT = 2
EXIT_AWS = 3
EXIT_INTERRUPTED = 130


class HybridError(Exception):
    exit_code = EXIT_AWS


class UserError(HybridError):
    """Bad input: a config, flag or name the user must fix. Nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class AwsError(HybridError):
    """AWS refused or failed a call; the message names the call and AWS's own reason."""

    exit_code = EXIT_AWS


class MissingDependencyError(UserError):
    """An optional dependency (torch-neuronx, the CDK, matplotlib) is not installed here."""
