"""`autofusion report` rebuilds a report; `autofusion compare` puts several runs in one report."""

from __future__ import annotations

from pathlib import Path

from report_fakes import make_fake_run

from autofusion.cli import main


def test_report_command_rebuilds_the_report(fake_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(fake_run, run)
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").read_text() .count("<img ") >= 5


def test_compare_draws_one_line_and_one_table_per_run(fake_run: Path, tmp_path: Path, capsys) -> None:
    other = make_fake_run(tmp_path / "random-run", controller="random", offset=0.01)
    assert main(["compare", str(fake_run), str(other), "--out", str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.count('<table id="table-models-') == 2
    assert "random/synth seed 0" in page and "evolution/synth seed 0" in page
    assert page.count("<img ") == 1 and (tmp_path / "cmp" / "report_files" / "best_so_far.png").is_file()
    from test_report_numbers import parse

    runs = parse(tmp_path / "cmp" / "compare.html").tables["table-runs"]
    best = {key: float(cells[4][0]) for key, cells in runs.items()}
    assert best[str(other)] - best[str(fake_run)] == pytest_approx(0.01)


def pytest_approx(x: float):  # noqa: ANN201 - tiny helper keeping the import local
    import pytest

    return pytest.approx(x, abs=1e-12)
