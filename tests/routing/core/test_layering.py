"""The layering rule of routing/ (docs/architecture.md): routing/core is pure.

A module under routing/core may import only the standard library's pure parts and other
routing.core modules. No boto3/botocore, no toolkit (except under TYPE_CHECKING, for type hints of
the settings model), no adapters, no file or network I/O, no clock reads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "routing" / "core"
CORE_FILES = sorted(CORE.glob("*.py"))

# Top-level modules the core must not import: AWS, the toolkit, I/O, processes, the clock.
FORBIDDEN_MODULES = {
    "boto3", "botocore", "toolkit", "cdk", "os", "io", "pathlib", "shutil", "tempfile", "fcntl", "socket",
    "ssl", "http", "urllib", "requests", "subprocess", "time", "logging", "sqlite3", "pickle", "shelve",
}
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those inside `if TYPE_CHECKING:` (never executed)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                stack.extend(child.orelse)  # type: ignore[attr-defined]
                continue
            stack.append(child)
    return out


def violations(source: str) -> list[str]:
    found: list[str] = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        else:
            names = []
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN_MODULES:
                found.append(f"line {node.lineno}: imports {name}")
            elif top == "routing" and not name.startswith("routing.core"):
                found.append(f"line {node.lineno}: imports {name} (outside routing.core)")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: calls {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_READS:
                found.append(f"line {node.lineno}: reads the clock ({ast.unparse(func)}())")
    return found


def test_the_core_has_modules_to_check() -> None:
    assert {"model.py", "policy.py", "gates.py", "stats.py", "staging.py"} <= {p.name for p in CORE_FILES}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_a_core_module_does_no_io_reads_no_clock_and_imports_no_aws_or_toolkit(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import boto3",
        "from botocore.exceptions import ClientError",
        "from toolkit.config import HybridConfig",
        "from routing.adapters.clock import SystemClock",
        "def f():\n    from pathlib import Path\n    return Path('x')",
        "def f(path):\n    return open(path).read()",
        "from datetime import datetime\nnow = datetime.now()",
        "import time\nt = time.time()",
    ],
)
def test_the_layering_check_catches_each_kind_of_impurity(snippet: str) -> None:
    assert violations(snippet), snippet


def test_type_hints_of_the_settings_model_are_allowed_under_type_checking() -> None:
    assert violations("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toolkit.config import HybridConfig\n") == []


def test_importing_the_whole_core_loads_no_boto3_botocore_or_toolkit() -> None:
    modules = ", ".join(f"routing.core.{p.stem}" for p in CORE_FILES if p.stem != "__init__")
    code = (f"import importlib, sys\nfor m in '{modules}'.split(', '):\n    importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'toolkit', 'pydantic', 'yaml'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_metrics_core_is_among_the_checked_modules() -> None:
    assert "observations.py" in {p.name for p in CORE_FILES}
