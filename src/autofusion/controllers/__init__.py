"""Controllers: policies that choose the next search action (propose / observe)."""

from autofusion.controllers.base import Action, Controller, History, Proposal, Record
from autofusion.controllers.evolution import EvolutionController
from autofusion.controllers.random import RandomController

__all__ = ["Action", "Controller", "EvolutionController", "History", "Proposal", "RandomController", "Record"]
