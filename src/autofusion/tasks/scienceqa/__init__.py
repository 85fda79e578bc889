"""ScienceQA: problems in either distribution layout -> a feature-task directory, and its accuracy breakdown.

Importing this package loads neither transformers nor pyarrow; they are imported when used.
See README.md beside this file for the real-data recipe and its costs.
"""

from autofusion.tasks.scienceqa.categories import scienceqa_breakdown
from autofusion.tasks.scienceqa.prepare import extract_task, prepare_scienceqa
from autofusion.tasks.scienceqa.problems import Problem, read_scienceqa

__all__ = ["Problem", "extract_task", "prepare_scienceqa", "read_scienceqa", "scienceqa_breakdown"]
