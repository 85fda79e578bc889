"""Reports: `report.html` and `report.md` of a run directory, built from its run store only.

`write_report(run_dir, store=None, summary=None)` writes one run's report; `write_comparison(run_dirs,
out_dir)` one report across several runs.
"""

from autofusion.report.compare import write_comparison
from autofusion.report.run import write_report

__all__ = ["write_comparison", "write_report"]
