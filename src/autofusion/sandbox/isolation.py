"""Isolation layers applied in a freshly forked child before it runs candidate code.

Each layer is applied in `isolate()` and reported by name, so the evaluator can say which
protections are active on this host. What is here is the process-model boundary: own session and
process group (so the parent can kill everything at once), death with the zygote, a fresh scratch
directory as the working directory, stdin closed, no inherited descriptors, and no network (a new
network namespace; for a non-root user inside a new user namespace) where the kernel allows it. The
environment was already scrubbed when the zygote was started. The kernel layers (private tmpfs
scratch, Landlock, dropped uid, seccomp) are applied next, in `harden.py`; the resource limits last
(`apply_limits`), once the job's settings are known, and always before its code arrives.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class Limits:
    max_memory_mb: int
    cpu_seconds: int
    max_open_files: int = 64
    max_file_mb: int = 64


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def vm_size_bytes() -> int:
    """What the process maps now (read from /proc, so before Landlock hides it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _set_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def apply_limits(limits: Limits, mapped_bytes: int | None = None) -> list[str]:
    # Address space: what the process already maps (torch, the shared features) plus the allowance.
    mapped = vm_size_bytes() if mapped_bytes is None else mapped_bytes
    _set_limit(resource.RLIMIT_AS, mapped + limits.max_memory_mb * 1024 * 1024)
    _set_limit(resource.RLIMIT_CPU, max(1, limits.cpu_seconds))
    _set_limit(resource.RLIMIT_NOFILE, limits.max_open_files)
    _set_limit(resource.RLIMIT_FSIZE, limits.max_file_mb * 1024 * 1024)
    _set_limit(resource.RLIMIT_CORE, 0)
    return ["rlimit-memory", "rlimit-cpu", "rlimit-files", "rlimit-filesize", "no-core-dumps"]


def die_with_parent() -> bool:
    return _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def unshare_network() -> bool:
    """Move into a new, empty network namespace (only loopback, down). Needs root or userns."""
    if _libc.unshare(CLONE_NEWNET) == 0:
        return True
    return os.geteuid() != 0 and _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0


def close_other_fds(keep: set[int]) -> None:
    for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def redirect_stdio(scratch: str) -> None:
    """stdin from /dev/null; stdout/stderr to a file in the scratch dir (size-capped by RLIMIT_FSIZE).

    Nothing the candidate prints is parsed as a result."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out = os.open(os.path.join(scratch, "output.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def isolate(scratch: str, keep_fds: set[int], require_network_isolation: bool) -> list[str]:
    """Apply every available layer but the resource limits (`apply_limits`, once the job's
    settings are known); return the names of the active ones."""
    active: list[str] = []
    os.setsid()  # own session and process group: the parent kills the whole group on timeout
    active.append("own-process-group")
    if die_with_parent():
        active.append("dies-with-parent")
    close_other_fds(keep_fds)
    active.append("no-inherited-fds")
    os.chdir(scratch)
    redirect_stdio(scratch)
    active += ["scratch-cwd", "stdin-closed"]
    if unshare_network():
        active.append("no-network")
    elif require_network_isolation:
        raise OSError("cannot create a network namespace for the candidate")
    return active
