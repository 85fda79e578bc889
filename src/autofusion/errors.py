"""Project errors: faults of the system or of its input.

Faults in candidate code are *data* (a recorded status with the error text) and never raise.
Everything here is meant to be printed to a user as-is: each message names the offending value
and says how to fix it. The CLI prints these without a traceback and exits with code 2.
"""

from __future__ import annotations


class AutoFusionError(Exception):
    """A fault of the system or of the user's input; the message names the value and the fix."""


class TaskError(AutoFusionError):
    """A feature-task directory that cannot be used (missing file, bad tensor, bad label...)."""


class ConfigError(AutoFusionError):
    """A setting that is unknown, mistyped or out of range."""


class SandboxError(AutoFusionError):
    """The evaluation sandbox cannot be started or its required protections are unavailable."""
