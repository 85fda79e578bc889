"""RayExecutor on a local Ray instance: same results as the local executor, a killed actor loses no job.

Skipped when Ray is not installed (`pip install "autofusion[ray]"`). Starting Ray and its actors
takes several seconds on 2 cores, so the module is marked slow.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from autofusion.cli import main
from autofusion.evaluation import Status, TrainSettings

from helpers import CONCAT

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

FAST = TrainSettings(epochs=2, threads=1, timeout_s=60)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _config(path: Path, task: Path, executor: str) -> Path:
    path.write_text("\n".join([
        f'task = "{task}"', "budget = 3", 'zoo = ["concat"]', "final_top_k = 1", "final_seeds = 1", "workers = 1",
        f'executor = "{executor}"', "[train]", "epochs = 2", "threads = 1", "timeout_s = 60"]) + "\n")
    return path


def _results(run: Path) -> list[tuple]:
    """Everything an evaluation computes, without its timings."""
    db = sqlite3.connect(run / "run.db")
    rows = db.execute("SELECT c.proposal_index, c.code_hash, c.status, e.purpose, e.seed, e.fidelity, e.val_accuracy,"
                      " e.test_accuracy, e.params, e.flops, e.curves FROM candidates c LEFT JOIN evaluations e"
                      " ON e.candidate_id = c.id ORDER BY c.id, e.id").fetchall()
    out = []
    for *head, curves in rows:
        parsed = json.loads(curves) if curves else {}
        out.append((*head, parsed.get("train_loss"), parsed.get("val_accuracy")))
    return out


def test_same_seed_same_candidates_and_metrics_local_and_ray(tmp_path: Path, tiny_task: Path, local_ray: None) -> None:
    runs = {}
    for executor in ("local", "ray"):
        cfg = _config(tmp_path / f"{executor}.toml", tiny_task, executor)
        runs[executor] = tmp_path / executor
        assert main(["search", "--config", str(cfg), "--out", str(runs[executor])]) == 0
    assert _results(runs["local"]) == _results(runs["ray"])
    assert len(_results(runs["ray"])) >= 4
    summaries = [json.loads((runs[e] / "summary.json").read_text()) for e in ("local", "ray")]
    assert summaries[0]["best"] == summaries[1]["best"]


def test_killed_actor_is_replaced_and_the_job_rerun(tiny_task: Path, local_ray: None) -> None:
    from autofusion.evaluation.ray_executor import RayExecutor

    ex = RayExecutor(tiny_task, workers=1)
    try:
        (actor,) = ex.actors()
        future = ex.submit(CONCAT, FAST.with_(epochs=300, patience=0))
        ray.kill(actor, no_restart=True)
        result = future.result(timeout=180)
        assert result.status is Status.OK, result.error
        assert result.epochs_run == 300 and ex.n_replaced == 1 and ex.actors() != [actor]
        assert ex.smoke(CONCAT, FAST).status is Status.OK  # the replacement keeps serving
    finally:
        ex.shutdown()


def test_missing_ray_or_unreadable_task_is_a_clear_error(tmp_path: Path, local_ray: None) -> None:
    from autofusion.errors import SandboxError
    from autofusion.evaluation.ray_executor import RayExecutor

    with pytest.raises(SandboxError, match="not readable on Ray node"):
        RayExecutor(tmp_path / "nowhere", workers=1)
