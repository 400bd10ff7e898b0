"""Old import path, kept for one release: the module now lives in routing.core.model (see docs/architecture.md).

This name is an alias of that module (the same object), so attributes, private helpers and
monkeypatching behave exactly as before.
"""

import sys

from routing.core import model as _module

sys.modules[__name__] = _module
