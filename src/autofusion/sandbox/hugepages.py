"""Cheaper forks: back the zygote's anonymous memory with transparent huge pages.

A fork copies one page-table entry per resident 4 KiB page of private memory, and the child's exit
drops them all again. Torch's import and the zygote's warm-up leave ~220 MB of such memory (the C++
heap, Python's arenas), so each fork and exit cost ~40 ms of CPU, twice per evaluation (the
candidate's child and the replay's). Collapsing that memory into 2 MiB pages (`MADV_COLLAPSE`,
Linux >= 6.1) leaves ~100 entries to copy instead of ~55,000: fork + exit ~11 ms.

A write to a shared huge page splits only the writer's mapping and copies 4 KiB (Linux >= 5.8), so
the children's page faults stay what they were. The zygote's own writes split its mappings over time;
`Collapser` re-collapses them in the zygote's idle moments, a few chunks at a time, so no job waits
on it. Where the kernel refuses (older kernels, THP set to `never`), nothing changes but the speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time

MADV_COLLAPSE = 25
HUGE = 2 << 20
MIN_RESIDENT = 0.5  # collapse a mapping only if at least this share of it is resident (no padding to 2 MiB)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def collapsible_chunks(smaps: str = "/proc/self/smaps") -> list[int]:
    """Start addresses of the 2 MiB-aligned chunks of this process's private, writable, anonymous
    mappings (and the heap) that are mostly resident and not yet huge."""
    chunks: list[int] = []
    region: tuple[int, int] | None = None
    rss = huge = 0

    def flush() -> None:
        if region is None:
            return
        start, end = region
        lo, hi = (start + HUGE - 1) & ~(HUGE - 1), end & ~(HUGE - 1)
        if hi > lo and rss >= MIN_RESIDENT * (end - start) and huge < rss:
            chunks.extend(range(lo, hi, HUGE))

    with open(smaps) as fh:
        for line in fh:
            head = line.split(None, 6)
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:  # a mapping's first line
                flush()
                perms, path = head[1], head[5].strip() if len(head) > 5 else ""
                region = None
                if perms.startswith("rw") and perms.endswith("p") and path in ("", "[heap]"):
                    region = tuple(int(x, 16) for x in head[0].split("-"))  # type: ignore[assignment]
                rss = huge = 0
            elif head[0] == "Rss:":
                rss = int(head[1]) * 1024
            elif head[0] == "AnonHugePages:":
                huge = int(head[1]) * 1024
    flush()
    return chunks


def collapse(address: int) -> bool:
    return _libc.madvise(address, HUGE, MADV_COLLAPSE) == 0


class Collapser:
    """Collapse the process's anonymous memory into huge pages one chunk per `step` (~6 ms), and
    rescan every `rescan_s` seconds for mappings the process split since."""

    def __init__(self, rescan_s: float = 30.0) -> None:
        self.rescan_s = rescan_s
        self.pending: list[int] = []
        self.next_scan = 0.0
        self.supported = True  # until the kernel refuses every chunk of the first scan
        self.collapsed = 0  # chunks, over the process's life

    def due(self) -> bool:
        return self.supported and (bool(self.pending) or time.monotonic() >= self.next_scan)

    def step(self) -> None:
        if not self.due():
            return
        if not self.pending:
            try:
                self.pending = collapsible_chunks()
            except (OSError, ValueError):  # no /proc here, or a format this parser does not know
                self.supported = False
            self.next_scan = time.monotonic() + self.rescan_s
            return
        if collapse(self.pending.pop()):
            self.collapsed += 1
        elif not self.collapsed and not self.pending:
            self.supported = False  # nothing ever collapsed: a kernel before 6.1, or THP disabled
