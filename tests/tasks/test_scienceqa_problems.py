"""Reading ScienceQA in both layouts: detection, fields, split mapping, order, limit and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autofusion.errors import AutoFusionError
from autofusion.tasks.scienceqa.images import ImageLoader
from autofusion.tasks.scienceqa.problems import (
    Layout,
    detect_layout,
    grade_band,
    problem_meta,
    read_scienceqa,
)


def _expected(questions: list[tuple], split: str) -> list[tuple]:
    return [q for q in questions if q[1] == split]


def test_official_layout_is_read_in_pid_splits_order_with_all_fields(official_dir: Path, scienceqa_questions: list[tuple]) -> None:
    assert detect_layout(official_dir) == (Layout.OFFICIAL, official_dir)
    problems = read_scienceqa(official_dir)
    assert set(problems) == {"train", "val", "test"}  # minival / minitrain in pid_splits.json are ignored
    for split in problems:
        want = _expected(scienceqa_questions, split)
        got = problems[split]
        assert [p.pid for p in got] == [q[0] for q in want]
        for p, q in zip(got, want):
            assert (p.question, list(p.choices), p.answer, p.hint, p.has_image, p.subject, p.grade) == (q[2], q[3], q[4], q[5], q[6], q[7], q[8])
            assert p.split == split
    first = problems["train"][0]
    assert first.image is not None and first.image.source == official_dir / "images" / "101" / "image.png"


def test_official_layout_finds_images_under_split_folders_and_uses_split_field_without_pid_splits(tmp_path: Path, make_official, scienceqa_questions) -> None:
    root = make_official(tmp_path / "sqa", images_under_split=True, with_pid_splits=False)
    problems = read_scienceqa(root)
    assert [p.pid for p in problems["val"]] == [q[0] for q in _expected(scienceqa_questions, "val")]
    assert problems["val"][0].image.source == root / "images" / "val" / "201" / "image.png"
    assert ImageLoader().load(problems["val"][0]).mode == "RGB"


def test_official_layout_is_found_under_data_scienceqa(tmp_path: Path, make_official) -> None:
    make_official(tmp_path / "repo" / "data" / "scienceqa")
    assert detect_layout(tmp_path / "repo") == (Layout.OFFICIAL, tmp_path / "repo" / "data" / "scienceqa")


def test_huggingface_layout_maps_validation_to_val_and_keeps_file_order(hf_dir: Path, scienceqa_questions) -> None:
    assert detect_layout(hf_dir) == (Layout.HUGGINGFACE, hf_dir / "data")
    problems = read_scienceqa(hf_dir)
    assert set(problems) == {"train", "val", "test"}
    for split in problems:
        want = _expected(scienceqa_questions, split)
        assert [p.question for p in problems[split]] == [q[2] for q in want]
        assert [p.has_image for p in problems[split]] == [q[6] for q in want]
        assert [p.answer for p in problems[split]] == [q[4] for q in want]
    # train spans two parquet files: the 5th question comes from row 0 of the second file
    fifth = problems["train"][4]
    assert fifth.image is not None and fifth.image.row == 0 and "00001-of-00002" in fifth.image.source.name
    assert problems["train"][4].pid == "train-00004"


def test_parquet_images_decode_to_the_bytes_written(hf_dir: Path, official_dir: Path) -> None:
    """Row-group lookups give each question its own image (same pixels as the official layout's PNG)."""
    hf = read_scienceqa(hf_dir)
    official = read_scienceqa(official_dir)
    loader_hf, loader_off = ImageLoader(), ImageLoader()
    for split in ("train", "test"):
        for a, b in zip(hf[split], official[split]):
            if b.has_image:
                assert loader_hf.load(a).tobytes() == loader_off.load(b).tobytes()


def test_limit_keeps_the_first_questions_of_each_split(hf_dir: Path, official_dir: Path) -> None:
    for source in (hf_dir, official_dir):
        problems = read_scienceqa(source, limit=2)
        assert {s: len(v) for s, v in problems.items()} == {"train": 2, "val": 2, "test": 2}
    assert [p.question for p in read_scienceqa(hf_dir, limit=5)["train"]][-1] == "Which is a solid?"


def test_missing_image_is_reported_before_any_extraction(official_dir: Path) -> None:
    (official_dir / "images" / "102" / "image.png").unlink()
    with pytest.raises(AutoFusionError, match=r"1 ScienceQA image\(s\) are missing.*102.*Fix: download"):
        read_scienceqa(official_dir)


def test_corrupt_image_names_the_problem_and_file(official_dir: Path) -> None:
    (official_dir / "images" / "105" / "image.png").write_bytes(b"not a png at all")
    problem = next(p for p in read_scienceqa(official_dir)["train"] if p.pid == "105")
    with pytest.raises(AutoFusionError, match=r"problem 105 .*images/105/image.png.* corrupt"):
        ImageLoader().load(problem)


def test_unknown_layout_lists_what_was_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AutoFusionError, match=r"unknown ScienceQA layout.*notes.txt.*problems.json.*parquet"):
        read_scienceqa(tmp_path)
    with pytest.raises(AutoFusionError, match="is not a directory"):
        read_scienceqa(tmp_path / "absent")


def test_malformed_answer_names_the_problem(official_dir: Path) -> None:
    problems = json.loads((official_dir / "problems.json").read_text())
    problems["203"]["answer"] = 7
    (official_dir / "problems.json").write_text(json.dumps(problems))
    with pytest.raises(AutoFusionError, match=r"\[203\].*answer 7 is not an index into its 3 choices"):
        read_scienceqa(official_dir)


def test_prompt_follows_the_question_context_options_form(official_dir: Path) -> None:
    problems = read_scienceqa(official_dir)
    assert problems["train"][1].prompt() == "Question: Which state is farthest north?\nContext: Look at the map.\nOptions: (A) Ohio (B) Texas (C) Maine"
    assert problems["train"][0].prompt().split("\n")[1] == "Context: N/A"


def test_meta_columns_and_grade_bands(official_dir: Path) -> None:
    meta = problem_meta(read_scienceqa(official_dir)["test"])
    assert meta["pid"] == ["301", "302", "303", "304"]
    assert meta["grade_band"] == ["G7-12", "G1-6", "G7-12", "G1-6"]
    assert meta["has_image"] == [False, False, True, True]
    assert meta["has_context"] == [False, True, False, True]
    assert meta["n_choices"] == [5, 2, 2, 3]
    assert (grade_band("grade6"), grade_band("grade7"), grade_band("")) == ("G1-6", "G7-12", "")
