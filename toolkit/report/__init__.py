"""Reports: one renderer (render.py) fed by one typed input (model.ReportInput).

- the demo builds the input from a simulated run (demo.py): `write_report(result, summary, path)`;
- `hybrid report` builds it from a real rollout's decision records and CloudWatch (rollout.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_report(result: Any, summary: Mapping[str, Any], path: str | Path) -> Path:
    """The demo's report: `.png` writes the plot only; anything else the HTML plus the PNG beside it."""
    from toolkit.report.demo import from_run
    from toolkit.report.render import write_report as render

    return render(from_run(result, summary), path)
