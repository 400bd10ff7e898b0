"""Error kinds and the CLI exit codes they map to (one place, so every command agrees).

Defined in the core, not in the toolkit, because the pure policy refuses a human's command
with the same one-line exit-2 error the CLI prints (UserError), and the core may not import
the toolkit. toolkit.errors re-exports these and adds the adapter-side kinds (AwsError, ...).

0 ok / progressed / held, 1 a failed or rolled-back canary, 2 bad input, 3 AWS errors.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_BAD_INPUT = 2
EXIT_AWS = 3


class HybridError(Exception):
    exit_code = EXIT_AWS


class UserError(HybridError):
    """Bad input: a config, flag or name the user must fix. Nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class StateUnreadable(UserError):
    """The stored controller state cannot be used (corrupt, wrong shape, another endpoint's).

    Exit 2 with one line naming the file and the recovery (`hybrid canary reset`); `abort` still works."""


class StorageError(HybridError):
    """The disk or the state table failed (full disk, a directory where a file should be): exit 3."""

    exit_code = EXIT_AWS
