"""The report opens in a real headless browser (Debian's chromium) without errors, figures and tables shown."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")


def rendered_status(page: Path) -> dict[str, str]:
    """Load the page, let its scripts run, return the attributes its load handler set on #report-status."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
                              page.resolve().as_uri()], capture_output=True, text=True, timeout=90)
    match = re.search(r'<p id="report-status"([^>]*)>', out.stdout)
    assert match, f"no report status in the DOM; chromium said: {out.stderr[-2000:]}"
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', match.group(1)))


def test_report_renders_every_figure_and_table_without_errors(fake_run: Path) -> None:
    page = fake_run / "report.html"
    status = rendered_status(page)
    source = page.read_text()
    assert status["state"] == "ok", status
    assert status["errors"] == "0" and status["broken"] == "0"
    assert int(status["figures"]) == source.count("<img ") >= 5  # progress, curves, params, FLOPs, breakdown
    assert int(status["tables"]) == source.count("<table ") >= 4  # models, breakdown, lineage, LLM


def test_a_broken_figure_or_script_error_is_detected(fake_run: Path, tmp_path: Path) -> None:
    page = (fake_run / "report.html").read_text()
    broken = page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    broken = broken.replace("</body>", "<script>undefinedFunction();</script></body>")
    (tmp_path / "report.html").write_text(broken)
    status = rendered_status(tmp_path / "report.html")
    assert status["state"] == "problems"
    assert status["broken"] == "1" and int(status["errors"]) >= 1
