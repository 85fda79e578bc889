"""The attack corpus, run through the real evaluator with the static policy on and then off.

Every file in `cases/` is a candidate whose docstring states its expected outcome in both passes:
`rejected` (by the static gate), `error` (rejected by the smoke run or failed), `timeout`, `ok`
(scored honestly) or `contained` (any status). Whatever the status, each case must also leave the
world untouched: the task's val/test labels are random (an honest candidate scores at chance), the
parent's environment holds a canary secret, a TCP listener waits on loopback, marker files are
watched, the task files are hashed, and no process may outlive its job. An honest candidate scores
the same before and after the attacks. `benign/` and the zoo must pass both passes.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from autofusion.evaluation import ProxyEvaluator, Status, TrainSettings
from autofusion.sandbox.pool import Sandbox
from autofusion.tasks.format import write_task

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.py"))
BENIGN = sorted((HERE / "benign").glob("*.py"))
EXPECTED = re.compile(r"Expected: static policy on -> (\w+); static policy off -> (\w+)")
MEASURED = re.compile(r"Measured params: (\d+)")  # a case that lies about its size states the truth
N_CLASSES, N_EVAL = 4, 200
CHANCE_BOUND = 1 / N_CLASSES + 0.12  # chance + ~4 standard deviations at 200 samples
CANARY_VAR = "AUTOFUSION_TEST_CANARY_SECRET"
SETTINGS = TrainSettings(epochs=1, batch_size=64, timeout_s=4.0, smoke_timeout_s=4.0, max_memory_mb=512)

pytestmark = pytest.mark.slow


class Listener:
    """A loopback TCP server that counts connections (none may arrive)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def _random_label_task(out: Path) -> Path:
    gen = torch.Generator().manual_seed(1)
    splits = {}
    for name, n in (("train", 96), ("val", N_EVAL), ("test", N_EVAL)):
        splits[name] = {"image": torch.randn(n, 4, 8, generator=gen), "text": torch.randn(n, 6, generator=gen),
                        "label": torch.randint(0, N_CLASSES, (n,), generator=gen)}
    write_task(out, "random-labels", N_CLASSES, splits)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("adversarial")
    task = _random_label_task(root / "task")
    markers = root / "markers"
    markers.mkdir()
    canary = "canary-" + secrets.token_hex(16)
    os.environ[CANARY_VAR] = canary  # in the parent's environment before the zygote starts
    listener = Listener()
    box = Sandbox(task)
    try:
        yield {"task": task, "markers": markers, "canary": canary, "listener": listener, "sandbox": box,
               "hashes": _hashes(task), "on": ProxyEvaluator(task, sandbox=box, static_policy=True),
               "off": ProxyEvaluator(task, sandbox=box, static_policy=False)}
    finally:
        box.close()
        listener.sock.close()
        os.environ.pop(CANARY_VAR, None)


def _hashes(task: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(task.iterdir())}


def _render(path: Path, world: dict) -> str:
    code = path.read_text(encoding="utf-8")
    return (code.replace('"MARKER_DIR', '"' + str(world["markers"])).replace('"TASK_DIR', '"' + str(world["task"]))
            .replace("47474", str(world["listener"].port)))


def _leftovers(zygote_pid: int) -> list[int]:
    """Every live descendant of the zygote that is or comes from a job: it has the job's address
    space limit, which nothing unprivileged can lift (the zygote's spare child, waiting for the next
    job, has none yet). Orphans re-parent to the zygote (it is a child subreaper), so a daemon that
    double-forked and called setsid is still found here."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], list(children.get(zygote_pid, []))
    while todo:
        pid = todo.pop()
        if _has_job_limits(pid):
            found.append(pid)
        todo += children.get(pid, [])
    return found


def _has_job_limits(pid: int) -> bool:
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return False  # gone
    line = next((l for l in limits.splitlines() if l.startswith("Max address space")), "")
    return "unlimited" not in line


def _assert_contained(world: dict, result, started: float) -> None:
    text = repr(result.to_json())
    assert world["canary"] not in text, "the canary secret reached the parent"
    error = result.error or ""
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\u202e]", error), "control characters in the error text"
    assert len(result.stage or "") < 20, "an unbounded stage string"
    assert "ESCAPED" not in text, f"the candidate reports an escape: {result.error[:500] if result.error else ''}"
    assert not list(world["markers"].iterdir()), f"marker files written: {list(world['markers'].iterdir())}"
    assert world["listener"].connections == 0, "the loopback listener was contacted"
    assert _hashes(world["task"]) == world["hashes"], "the task files changed"
    assert not Path("/dev/shm/autofusion_shared").exists() and not Path("/tmp/autofusion_shared").exists()
    assert time.monotonic() - started < SETTINGS.timeout_s + 5, "the evaluation did not end within its timeout"
    zygote = world["sandbox"].proc.pid
    deadline = time.monotonic() + 3
    while _leftovers(zygote) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _leftovers(zygote), "a process outlived its job"
    assert world["sandbox"].alive, "the zygote died"
    if result.status is Status.OK:
        assert result.val_accuracy <= CHANCE_BOUND and result.test_accuracy <= CHANCE_BOUND, (
            f"scored above chance on random labels: val {result.val_accuracy}, test {result.test_accuracy}")


def _check_outcome(expected: str, result) -> None:
    if expected == "rejected":
        assert result.status is Status.REJECTED and result.stage == "gate", (result.status, result.stage, result.error)
    elif expected == "error":
        assert result.status in (Status.FAILED, Status.REJECTED) and result.stage != "gate", (result.status, result.stage, result.error)
    elif expected == "timeout":
        assert result.status is Status.TIMEOUT, (result.status, result.stage, result.error)
    elif expected == "ok":
        assert result.status is Status.OK, (result.status, result.stage, result.error)
    else:
        assert expected == "contained", f"unknown expectation {expected!r}"


def test_the_corpus_is_large_enough_and_every_case_states_its_outcome() -> None:
    assert len(CASES) >= 40
    for path in CASES:
        assert EXPECTED.search(path.read_text(encoding="utf-8")), f"{path.name} states no expected outcome"


@pytest.mark.parametrize("mode", ["on", "off"])
def test_attacks_are_rejected_or_contained(world: dict, mode: str) -> None:
    honest = (HERE / "benign" / "mean_pool_mlp.py").read_text(encoding="utf-8")
    before = world[mode].evaluate(honest, SETTINGS)
    assert before.ok, before.error
    failures = []
    for path in CASES:
        expected = dict(zip(("on", "off"), EXPECTED.search(path.read_text(encoding="utf-8")).groups()))[mode]
        started = time.monotonic()
        result = world[mode].evaluate(_render(path, world), SETTINGS)
        measured = MEASURED.search(path.read_text(encoding="utf-8"))
        try:
            _check_outcome(expected, result)
            if measured and result.status is Status.OK:
                assert result.params == int(measured.group(1)), f"params {result.params} is the candidate's claim"
            _assert_contained(world, result, started)
        except AssertionError as exc:
            failures.append(f"{path.name} (static policy {mode}): {exc}")
    after = world[mode].evaluate(honest, SETTINGS)
    assert (after.val_accuracy, after.test_accuracy, after.params) == (before.val_accuracy, before.test_accuracy, before.params)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_benign_candidates_pass(world: dict, mode: str) -> None:
    from autofusion.zoo import ZOO_NAMES, zoo_source

    sources = {p.name: p.read_text(encoding="utf-8") for p in BENIGN}
    sources.update({f"zoo/{n}": zoo_source(n) for n in ("concat", "gmu", "cross_attention")})
    assert len(BENIGN) >= 3 and len(ZOO_NAMES) >= 3
    for name, code in sources.items():
        started = time.monotonic()
        result = world[mode].evaluate(code, SETTINGS)
        assert result.ok, f"{name}: {result.status} {result.stage} {result.error}"
        assert result.params and result.params > 0 and result.flops and result.flops > 0
        _assert_contained(world, result, started)
