"""Metrics, computed only on the trusted side from raw logits received over the wire."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from autofusion.tasks.format import Split


def masked_predictions(logits: np.ndarray, label_mask: torch.Tensor | None) -> np.ndarray:
    """Arg-max over the classes a sample may take (all classes when there is no label mask)."""
    scores = logits.astype(np.float64, copy=True)
    if label_mask is not None:
        scores[~label_mask.numpy()] = -np.inf
    return scores.argmax(axis=1)


def accuracy(logits: np.ndarray, labels: torch.Tensor, label_mask: torch.Tensor | None = None) -> float:
    preds = masked_predictions(logits, label_mask)
    return float((preds == labels.numpy()).mean())


def correct(logits: np.ndarray, labels: torch.Tensor, label_mask: torch.Tensor | None = None) -> list[bool]:
    return (masked_predictions(logits, label_mask) == labels.numpy()).tolist()


MAX_CATEGORY_VALUES = 20


def category_breakdown(logits: np.ndarray, split: "Split") -> dict[str, Any] | None:
    """Accuracy per value of each categorical metadata field (e.g. subject, grade band).

    Returns None when the split has no metadata. ScienceQA tasks get the paper's categories
    (NAT/SOC/LAN, TXT/IMG/NO, G1-6/G7-12) from `tasks.scienceqa.categories` when it is installed.
    """
    if not split.meta or split.labels is None:
        return None
    hits = correct(logits, split.labels, split.label_mask)
    out: dict[str, Any] = {}
    try:
        from autofusion.tasks.scienceqa.categories import scienceqa_breakdown
    except ImportError:
        scienceqa_breakdown = None  # type: ignore[assignment]
    if scienceqa_breakdown is not None:
        sqa = scienceqa_breakdown(hits, split.meta)
        if sqa:
            out["scienceqa"] = sqa
    for field, values in split.meta.items():
        distinct = sorted({str(v) for v in values})
        if not 1 < len(distinct) <= MAX_CATEGORY_VALUES:
            continue
        table = {}
        for value in distinct:
            idx = [i for i, v in enumerate(values) if str(v) == value]
            table[value] = {"accuracy": sum(hits[i] for i in idx) / len(idx), "n": len(idx)}
        out[field] = table
    return out or None
