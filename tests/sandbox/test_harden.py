"""The kernel layers: the required-protections check, the seccomp program, and that the layers are
what contains an attack (the same candidate escapes a sandbox with them off)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from autofusion.errors import SandboxError
from autofusion.evaluation import ProxyEvaluator, Status, TrainSettings
from autofusion.sandbox import harden
from autofusion.sandbox.harden import REQUIRED, Hardening, check_required, seccomp_program
from autofusion.sandbox.pool import Sandbox

SETTINGS = TrainSettings(epochs=1, timeout_s=20.0, smoke_timeout_s=20.0, max_memory_mb=512)
READ_LABELS = '''
import torch
import torch.nn as nn


class FusionModel(nn.Module):
    def __init__(self, input_shapes, num_classes):
        super().__init__()
        self.names = list(input_shapes)
        self.head = nn.Linear(sum(s[-1] for s in input_shapes.values()), num_classes)
        try:
            data = open("TASK_DIR/val.safetensors", "rb").read(64)
        except OSError:
            data = None
        if data is not None:
            raise RuntimeError("ESCAPED read the task file")

    def forward(self, **inputs):
        return self.head(torch.cat([inputs[n] if inputs[n].dim() == 2 else inputs[n].mean(1) for n in self.names], dim=1))
'''
needs_root_linux = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                                      reason="the full layer set needs root on Linux (CI runs as root)")


def test_check_required_names_what_is_missing_and_refuses() -> None:
    assert check_required(list(REQUIRED), allow_weak=False) == []
    partial = [p for p in REQUIRED if p != "seccomp"]
    with pytest.raises(SandboxError, match="seccomp"):
        check_required(partial, allow_weak=False)
    assert check_required(partial, allow_weak=True) == ["seccomp"]


def test_hardening_defaults_to_every_layer_and_rejects_unknown_options() -> None:
    on = Hardening()
    assert on.seccomp and on.landlock and on.drop_privileges and on.private_scratch
    assert Hardening.from_dict(on.to_dict()) == on
    with pytest.raises(SandboxError, match="unknown hardening options"):
        Hardening.from_dict({"secomp": True})


def test_seccomp_program_jumps_stay_forward_and_in_range() -> None:
    prog = seccomp_program()
    if prog is None:
        pytest.skip("seccomp filter is built for x86_64 only")
    assert len(prog) < 4096
    for i, (code, jt, jf, _) in enumerate(prog):
        if code & 0x07 == 0x05:  # BPF_JMP
            assert 0 <= jt < 256 and 0 <= jf < 256
            assert i + 1 + max(jt, jf) < len(prog)
    assert prog[-1][3] == 0x80000000  # the last instruction kills on a foreign architecture


def test_read_roots_exclude_the_task_directory(tmp_path: Path) -> None:
    roots = harden.read_roots()
    assert roots and not any(r in ("/", "/tmp", "/proc", "/home", "/etc") for r in roots)
    assert not any(str(tmp_path).startswith(r.rstrip("/") + "/") for r in roots)


@needs_root_linux
def test_default_sandbox_reports_every_required_protection(shared_sandbox: Sandbox) -> None:
    channel = shared_sandbox.open_job(SETTINGS, smoke_only=True)
    try:
        hello = channel.recv(time.monotonic() + 20)
    finally:
        channel.close()
    missing = [p for p in REQUIRED if p not in hello.header["protections"]]
    assert not missing, f"protections missing on this host: {missing}"


@needs_root_linux
def test_the_layers_are_what_stops_a_file_read(tiny_task: Path, shared_sandbox: Sandbox) -> None:
    code = READ_LABELS.replace("TASK_DIR", str(tiny_task))
    contained = ProxyEvaluator(tiny_task, sandbox=shared_sandbox, static_policy=False).evaluate(code, SETTINGS)
    assert contained.status is Status.OK and "ESCAPED" not in (contained.error or "")
    with Sandbox(tiny_task, hardening=Hardening.off(), allow_weak=True) as weak:
        escaped = ProxyEvaluator(tiny_task, sandbox=weak, static_policy=False).evaluate(code, SETTINGS)
    assert "ESCAPED" in (escaped.error or ""), "without the kernel layers the read should have worked"


@needs_root_linux
def test_a_weak_sandbox_is_refused_unless_the_user_opts_in(tiny_task: Path, concat_source: str) -> None:
    with Sandbox(tiny_task, hardening=Hardening.off()) as weak:
        with pytest.raises(SandboxError, match="lacks required protections"):
            ProxyEvaluator(tiny_task, sandbox=weak).evaluate(concat_source, SETTINGS)
        assert weak.alive  # refusing is not a crash: the worker still serves the next job
