"""ScienceQA accuracy breakdown: categories as in the paper, generic when metadata is missing."""

from __future__ import annotations

import pytest

from autofusion.errors import AutoFusionError
from autofusion.tasks.scienceqa.categories import scienceqa_breakdown

META = {
    "subject": ["natural science", "natural science", "social science", "language science", "language science", "social science"],
    "has_context": [True, False, False, True, False, False],
    "has_image": [True, True, False, False, False, True],
    "grade": ["grade1", "grade7", "grade3", "grade12", "grade6", "grade8"],
}
CORRECT = [True, False, True, True, False, True]


def test_breakdown_counts_each_category() -> None:
    out = scienceqa_breakdown(CORRECT, META)
    assert list(out) == ["NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "all"]
    assert out["NAT"] == {"accuracy": 0.5, "n": 2}
    assert out["SOC"] == {"accuracy": 1.0, "n": 2}
    assert out["LAN"] == {"accuracy": 0.5, "n": 2}
    assert out["TXT"] == {"accuracy": 1.0, "n": 2}
    assert out["IMG"] == {"accuracy": 2 / 3, "n": 3}
    assert out["NO"] == {"accuracy": 0.5, "n": 2}  # samples 2 and 4: neither context nor image
    assert out["G1-6"] == {"accuracy": 2 / 3, "n": 3}  # grades 1, 3, 6
    assert out["G7-12"] == {"accuracy": 2 / 3, "n": 3}
    assert out["all"] == {"accuracy": 4 / 6, "n": 6}


def test_grade_band_column_is_used_when_present() -> None:
    out = scienceqa_breakdown([True, False], {"grade_band": ["G7-12", "G7-12"]})
    assert out == {"G7-12": {"accuracy": 0.5, "n": 2}, "all": {"accuracy": 0.5, "n": 2}}


def test_missing_metadata_gives_an_empty_breakdown() -> None:
    assert scienceqa_breakdown([True, False], {}) == {}
    assert scienceqa_breakdown([True, False], {"pid": ["a", "b"]}) == {}


def test_categories_without_samples_are_left_out() -> None:
    out = scienceqa_breakdown([True], {"subject": ["natural science"]})
    assert set(out) == {"NAT", "all"}


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(AutoFusionError, match="'subject' has 1 values for 2 predictions"):
        scienceqa_breakdown([True, False], {"subject": ["natural science"]})
