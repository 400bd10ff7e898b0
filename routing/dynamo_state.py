"""Old import path, kept for one release: the module now lives in routing.adapters.dynamo_store (see docs/architecture.md).

This name is an alias of that module (the same object), so attributes, private helpers and
monkeypatching behave exactly as before.
"""

import sys

from routing.adapters import dynamo_store as _module

sys.modules[__name__] = _module
