"""Cheaper forks for the zygote: its anonymous memory collapsed into transparent huge pages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autofusion.sandbox.hugepages import HUGE, collapsible_chunks

MB = 1 << 20


def _mapping(start: int, size: int, perms: str, path: str, rss: int, huge: int = 0) -> str:
    return (f"{start:x}-{start + size:x} {perms} 00000000 00:00 0          {path}\n"
            f"Size:           {size // 1024} kB\nRss:            {rss // 1024} kB\n"
            f"AnonHugePages:  {huge // 1024} kB\nVmFlags: rd wr mr mw me ac\n")


def test_only_private_writable_anonymous_memory_that_is_mostly_resident_is_picked(tmp_path: Path) -> None:
    base = 0x7F0000000000
    smaps = tmp_path / "smaps"
    smaps.write_text("".join([
        _mapping(base + 1000, 8 * MB, "rw-p", "", 7 * MB),  # unaligned start: 3 whole 2 MiB chunks inside
        _mapping(base + 16 * MB, 4 * MB, "rw-p", "[heap]", 4 * MB),
        _mapping(base + 32 * MB, 4 * MB, "rw-p", "/usr/lib/libtorch_cpu.so", 4 * MB),  # file-backed
        _mapping(base + 40 * MB, 4 * MB, "r--p", "", 4 * MB),  # read-only
        _mapping(base + 48 * MB, 4 * MB, "rw-s", "", 4 * MB),  # shared
        _mapping(base + 56 * MB, 8 * MB, "rw-p", "", 1 * MB),  # mostly not resident: no padding to 2 MiB
        _mapping(base + 64 * MB, 4 * MB, "rw-p", "", 4 * MB, huge=4 * MB),  # already huge
        _mapping(base + 72 * MB, 4 * MB, "rw-p", "[stack]", 4 * MB),
    ]))
    assert collapsible_chunks(str(smaps)) == [base + 2 * MB, base + 4 * MB, base + 6 * MB, base + 16 * MB, base + 18 * MB]
    assert all(c % HUGE == 0 for c in collapsible_chunks(str(smaps)))


def _kernel_collapses() -> str | None:
    """Why MADV_COLLAPSE cannot work here, or None if it must."""
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    if release < (6, 1):
        return f"MADV_COLLAPSE needs Linux >= 6.1 (this is {os.uname().release})"
    try:
        if "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text():
            return "transparent huge pages are disabled on this host"
    except OSError:
        return "no transparent huge page support in this kernel"
    return None


def _anon_huge_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def test_a_collapser_turns_resident_anonymous_memory_into_huge_pages() -> None:
    if (why := _kernel_collapses()) is not None:
        pytest.skip(why)
    script = (
        "import time\n"
        "from autofusion.sandbox.hugepages import Collapser\n"
        "block = bytearray(b'x' * (48 << 20))\n"  # resident, private, anonymous
        "c = Collapser()\n"
        "deadline = time.monotonic() + 30\n"
        "c.step()\n"
        "while c.pending and time.monotonic() < deadline:\n"
        "    c.step()\n"
        "rollup = open('/proc/self/smaps_rollup').read().split('AnonHugePages:')[1].split()[0]\n"
        "print(c.supported, c.collapsed, rollup)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    supported, collapsed, huge_kb = out[0] == "True", int(out[1]), int(out[2])
    assert supported and collapsed >= 20 and huge_kb >= 40 * 1024, out


def test_the_zygote_collapses_its_memory_while_it_waits(shared_sandbox) -> None:
    if (why := _kernel_collapses()) is not None:
        pytest.skip(why)
    deadline = time.monotonic() + 30
    while _anon_huge_kb(shared_sandbox.proc.pid) < 32 * 1024 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _anon_huge_kb(shared_sandbox.proc.pid) >= 32 * 1024


def test_a_host_without_smaps_turns_the_collapser_off_instead_of_failing(monkeypatch) -> None:
    from autofusion.sandbox import hugepages

    def missing() -> list[int]:
        raise FileNotFoundError("/proc/self/smaps")

    monkeypatch.setattr(hugepages, "collapsible_chunks", missing)
    collapser = hugepages.Collapser()
    collapser.step()
    assert not collapser.supported and not collapser.due()
