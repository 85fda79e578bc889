"""Accuracy broken down the way ScienceQA reports it, from per-sample correctness and meta.json columns.

Categories (as in the ScienceQA paper and its evaluation script):
- NAT / SOC / LAN: subject is natural / social / language science (`subject`);
- TXT: has a text context (`has_context`), IMG: has an image (`has_image`) — these overlap;
  NO: neither;
- G1-6 / G7-12: grade band (`grade_band`, or derived from `grade` such as "grade7");
- all: every sample.
Each group is computed only when its columns are present, and a category with no sample is left out,
so a task without ScienceQA metadata gets `{}`. Plain Python over lists: it reads no file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autofusion.errors import AutoFusionError
from autofusion.tasks.scienceqa.problems import grade_band

SUBJECTS = {"NAT": "natural science", "SOC": "social science", "LAN": "language science"}
ORDER = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "all")


def scienceqa_breakdown(correct: Sequence[bool], meta: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """category -> {"accuracy": float in [0, 1], "n": int}, in ORDER, plus "all"; {} without metadata."""
    n = len(correct)
    for key, values in meta.items():
        if len(values) != n:
            raise AutoFusionError(f"meta column {key!r} has {len(values)} values for {n} predictions. Fix: pass the meta.json columns of the split that was scored.")
    selectors: dict[str, Callable[[int], bool]] = {}
    if "subject" in meta:
        for code, subject in SUBJECTS.items():
            selectors[code] = lambda i, s=subject: str(meta["subject"][i]).strip().lower() == s
    if "has_context" in meta:
        selectors["TXT"] = lambda i: bool(meta["has_context"][i])
    if "has_image" in meta:
        selectors["IMG"] = lambda i: bool(meta["has_image"][i])
    if "has_context" in meta and "has_image" in meta:
        selectors["NO"] = lambda i: not meta["has_context"][i] and not meta["has_image"][i]
    bands = meta.get("grade_band") or ([grade_band(str(g)) for g in meta["grade"]] if "grade" in meta else None)
    if bands is not None:
        for band in ("G1-6", "G7-12"):
            selectors[band] = lambda i, b=band: bands[i] == b
    if not selectors:
        return {}
    selectors["all"] = lambda i: True
    out: dict[str, dict[str, Any]] = {}
    for code in ORDER:
        if code not in selectors:
            continue
        hits = [bool(correct[i]) for i in range(n) if selectors[code](i)]
        if hits:
            out[code] = {"accuracy": sum(hits) / len(hits), "n": len(hits)}
    return out
