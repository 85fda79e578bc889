"""Controllers: policies that choose the next search action (propose / observe), and the objective.

`A2CController` is imported on first use (it needs torch); the others are plain Python.
"""

from __future__ import annotations

from typing import Any

from autofusion.controllers.base import ACTION_SPACE, SELECTIONS, Action, Controller, History, Proposal, Record
from autofusion.controllers.evolution import EvolutionController
from autofusion.controllers.objective import Objective, pareto_front, pareto_fronts
from autofusion.controllers.random import RandomController

__all__ = [
    "ACTION_SPACE",
    "SELECTIONS",
    "A2CController",
    "Action",
    "Controller",
    "EvolutionController",
    "History",
    "Objective",
    "Proposal",
    "RandomController",
    "Record",
    "pareto_front",
    "pareto_fronts",
]


def __getattr__(name: str) -> Any:
    if name == "A2CController":
        from autofusion.controllers.a2c import A2CController

        return A2CController
    raise AttributeError(f"module 'autofusion.controllers' has no attribute {name!r}")
