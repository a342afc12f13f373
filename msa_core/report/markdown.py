"""Markdown helpers of the findings report: pipe tables and run tags."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["md_table", "run_tag"]


def md_table(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A pipe table (no tabulate dependency); a named index becomes the first column."""
    frame = frame.reset_index() if frame.index.name is not None else frame
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"

    def fmt(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "nan" if math.isnan(value) else format(float(value), floatfmt)
        return str(value)

    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def run_tag(record: Any) -> str:
    """How a run is cited next to its numbers: its short id in backticks."""
    return f"`{record.short_id}`"
