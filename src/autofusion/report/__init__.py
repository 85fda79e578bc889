"""Reports: `report.html` and `report.md` of a run directory, built from its run store only."""

from autofusion.report.basic import write_report

__all__ = ["write_report"]
