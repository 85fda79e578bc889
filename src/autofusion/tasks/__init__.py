"""Tasks: the feature-task directory format, its validation, the built-in tasks, ScienceQA."""

from autofusion.tasks.format import (
    SPLITS,
    Split,
    Task,
    TaskSpec,
    load_inputs,
    load_task,
    read_spec,
    split_sizes,
    validate_task,
    write_task,
)

__all__ = [
    "SPLITS",
    "Split",
    "Task",
    "TaskSpec",
    "load_inputs",
    "load_task",
    "read_spec",
    "split_sizes",
    "validate_task",
    "write_task",
]
