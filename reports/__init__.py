"""Turn a run directory into report.md, a self-contained report.html and figures/*.png."""

from __future__ import annotations

from .build import build_report
from .load_comparison import build_comparison_report

__all__ = ["build_report", "build_comparison_report"]
