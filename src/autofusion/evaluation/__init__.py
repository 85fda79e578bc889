"""Evaluation: the protocol, the proxy trainer (sandboxed side), the evaluator (trusted side)."""

from autofusion.evaluation.evaluator import Budgets, ProxyEvaluator
from autofusion.evaluation.protocol import Curves, EvalResult, Status, TrainSettings

__all__ = ["Budgets", "Curves", "EvalResult", "ProxyEvaluator", "Status", "TrainSettings"]
