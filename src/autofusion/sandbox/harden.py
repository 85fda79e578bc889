"""Kernel layers that confine a candidate's process, and the check that the required ones are on.

Applied by `harden()` in a freshly forked child, after `isolation.isolate()` and before the child
receives any candidate code, in this order (each step needs the privileges the next one drops):
1. `private-ipc`, `scratch-quota`: a private mount and IPC namespace; the scratch dir becomes a
   size-capped tmpfs that vanishes with the process (disk exhaustion impossible, nothing shared).
2. `landlock-fs`: reads allowed only under the Python runtime and library roots computed by
   `prepare_zygote()` (never the task directory, /proc, /sys, /home, /tmp); writes only in scratch.
   `landlock-net` (ABI 4+) denies TCP bind/connect; `landlock-scope` (ABI 6+) denies signals and
   abstract unix sockets to anything outside the child.
3. `unprivileged-uid`: root drops to a uid of its own (one per job, so jobs cannot signal or trace
   one another) with no capabilities; `rlimit-threads` then caps threads via RLIMIT_NPROC.
4. `seccomp`: a hand-built BPF filter (x86_64) refusing process creation (fork/vfork/clone without
   CLONE_THREAD, execve), new sockets, ptrace and cross-process memory access, mounts, namespaces,
   io_uring, bpf, kernel modules, keyrings, credential changes.
5. Probes, so the report is measured rather than assumed: `task-files-unreadable` (opening the
   task's files fails) and `network-unreachable` (creating an inet socket fails).

It does not judge candidates, parse their output or decide timeouts (the parent does). Layers that
the host cannot provide are simply absent from the returned list; `check_required()` turns that into
a refusal unless the user opts in. See SECURITY.md for the threat model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import resource
import signal
import socket
import struct
import sys
import sysconfig
from dataclasses import asdict, dataclass, fields
from typing import Any

from autofusion.errors import SandboxError

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS, CLONE_NEWIPC, CLONE_THREAD = 0x00020000, 0x08000000, 0x00010000
MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x4000, 0x40000, 0x2, 0x4, 0x8
JOB_UID_BASE = 2_000_000_000  # uid of a job's child = base + its pid: unique among live jobs

# Protections without which LLM-written code is not run unless the user opts in (allow_weak).
REQUIRED = (
    "own-process-group", "dies-with-parent", "scratch-cwd", "stdin-closed", "no-network",
    "rlimit-memory", "rlimit-cpu", "rlimit-filesize", "seccomp", "unprivileged-uid",
    "task-files-unreadable", "network-unreachable",
)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


@dataclass(frozen=True)
class Hardening:
    """Which kernel layers to apply; the default turns every one on."""

    seccomp: bool = True
    landlock: bool = True
    drop_privileges: bool = True
    private_scratch: bool = True  # tmpfs scratch in a private mount namespace
    scratch_mb: int = 64  # size of that tmpfs: all the candidate may write
    max_threads: int = 64  # RLIMIT_NPROC for the job's own uid (threads count as processes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> "Hardening":
        raw = dict(raw or {})
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise SandboxError(f"unknown hardening options {sorted(unknown)}; valid: {[f.name for f in fields(cls)]}")
        return cls(**raw)

    @classmethod
    def off(cls) -> "Hardening":
        """No kernel layers (process model and rlimits only): for debugging, never for LLM code."""
        return cls(seccomp=False, landlock=False, drop_privileges=False, private_scratch=False)


def check_required(active: list[str] | tuple[str, ...], allow_weak: bool) -> list[str]:
    """The required protections missing from `active`; raise SandboxError unless `allow_weak`."""
    missing = [name for name in REQUIRED if name not in active]
    if missing and not allow_weak:
        raise SandboxError(
            f"the sandbox on this host lacks required protections {missing} (active: {sorted(active)}); "
            "candidate code is not run without them. Run as root on Linux >= 5.13 with seccomp and "
            "Landlock, or accept the risk explicitly with --allow-weak-sandbox (allow_weak=True)")
    return missing


# ------------------------------------------------------------------------------ zygote side

_READ_ROOTS: list[str] = []
_TASK_FILES: list[str] = []


def prepare_zygote(task_dir: str | None = None) -> None:
    """Become a child subreaper and compute (once, before any fork) what children may read."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if task_dir is None:
        return
    task = os.path.realpath(task_dir)
    _TASK_FILES[:] = [os.path.join(task, f) for f in sorted(os.listdir(task))]
    _READ_ROOTS[:] = [r for r in read_roots() if not _inside(task, r)]


def read_roots() -> list[str]:
    """Directories a child may read: the interpreter, its libraries, this package, system libs."""
    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # the autofusion package
    paths |= {p for p in sys.path if "site-packages" in p or "dist-packages" in p or "lib-dynload" in p}
    paths |= {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache"}
    real = {os.path.realpath(p) for p in paths if p and os.path.exists(p)}
    return sorted(p for p in real if not any(p != q and _inside(p, q) for q in real))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def kill_descendants_of_job(job_pid: int, live_children: set[int]) -> None:
    """Kill what is left of a job: its session, its uid, and orphans re-parented to the zygote."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        info = _proc_info(pid)
        if info is None:
            continue
        ppid, session, uid = info
        if session == job_pid or uid == JOB_UID_BASE + job_pid or (ppid == me and pid not in live_children):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _proc_info(pid: int) -> tuple[int, int, int] | None:
    """(ppid, session id, real uid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    fields_ = raw[raw.rfind(")") + 2:].split()
    return int(fields_[1]), int(fields_[3]), uid


def job_uid(pid: int) -> int:
    return JOB_UID_BASE + pid


# ------------------------------------------------------------------------------ child side

def harden(options: dict[str, Any], scratch: str) -> list[str]:
    """Apply the layers in `options` (see `Hardening`) in the current child; return the active ones."""
    opts = Hardening.from_dict(options)
    active: list[str] = []
    root = os.geteuid() == 0
    if opts.private_scratch and root and _private_scratch(scratch, opts.scratch_mb):
        active += ["private-ipc", "scratch-quota"]
    os.chdir(scratch)  # (again) so that the cwd is the tmpfs, not the directory under it
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if opts.landlock:
        active += landlock(_READ_ROOTS, scratch)
    if opts.drop_privileges and root and _drop_privileges(job_uid(os.getpid()), scratch):
        active.append("unprivileged-uid")
    elif not root:
        active.append("unprivileged-uid")
    if os.geteuid() != 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (opts.max_threads, opts.max_threads))
        active.append("rlimit-threads")
    if opts.seccomp and install_seccomp():
        active.append("seccomp")
    active += _probes()
    return active


def _private_scratch(scratch: str, size_mb: int) -> bool:
    if _libc.unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0:
        return False
    if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    uid = job_uid(os.getpid())
    data = f"size={size_mb}m,nr_inodes=4096,mode=0700,uid={uid},gid={uid}".encode()
    return _libc.mount(b"tmpfs", scratch.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data) == 0


def _drop_privileges(uid: int, scratch: str) -> bool:
    try:
        os.chown(scratch, uid, uid)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError:
        return False
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a uid change clears it
    return os.geteuid() == uid and os.getuid() == uid


def _probes() -> list[str]:
    """Check from inside that the boundary holds, instead of trusting that the layers worked."""
    out = []
    readable = False
    for path in _TASK_FILES:
        try:
            os.close(os.open(path, os.O_RDONLY))
            readable = True
        except OSError:
            pass
    if _TASK_FILES and not readable:
        out.append("task-files-unreadable")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    except OSError:
        out.append("network-unreachable")
    return out


# ------------------------------------------------------------------------------ Landlock

_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_VERSION = 1
_LL_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI_BITS = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # how many fs access bits each ABI knows
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14) | (1 << 15)
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def landlock_abi() -> int:
    if platform.system() != "Linux":
        return 0
    version = _libc.syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_LL_VERSION))
    return max(0, int(version))


def landlock(read_roots: list[str], scratch: str) -> list[str]:
    """Restrict the filesystem (and TCP, signals where the ABI allows); return the layers applied."""
    abi = landlock_abi()
    if abi < 1:
        return []
    fs_all = (1 << _FS_ABI_BITS.get(abi, 16)) - 1
    layers = ["landlock-fs"]
    attr = struct.pack("=Q", fs_all)
    if abi >= 4:
        attr += struct.pack("=Q", 0b11)  # handled: TCP bind and connect, with no rule allowing any
        layers.append("landlock-net")
    if abi >= 6:
        attr += struct.pack("=Q", 0b11)  # scoped: abstract unix sockets and signals
        layers.append("landlock-scope")
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = int(_libc.syscall(_LL_CREATE, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)))
    if ruleset < 0:
        return []
    try:
        read = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        ok = all(_ll_allow(ruleset, p, read & fs_all) for p in read_roots)
        ok = ok and _ll_allow(ruleset, scratch, fs_all)
        for dev in _DEVICES:
            _ll_allow(ruleset, dev, (_FS_READ_FILE | _FS_WRITE_FILE) & fs_all)
        if not ok or _libc.syscall(_LL_RESTRICT, ruleset, ctypes.c_uint32(0)) != 0:
            return []
    finally:
        os.close(ruleset)
    return layers


def _ll_allow(ruleset: int, path: str, access: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return True  # a missing optional root is not an error
    try:
        if not os.path.isdir(path):
            access &= _FS_FILE_ONLY
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
        return _libc.syscall(_LL_ADD_RULE, ruleset, _LL_PATH_BENEATH, rule, ctypes.c_uint32(0)) == 0
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ seccomp (x86_64)

_AUDIT_ARCH_X86_64 = 0xC000003E
_X86_64_DENY = {
    # process creation and execution (clone is handled separately: threads stay allowed)
    "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
    # sockets: the job socket is inherited; no new ones
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53, "accept4": 288,
    # other processes
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_getfd": 438, "move_pages": 279, "migrate_pages": 256,
    # filesystem and namespaces
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "name_to_handle_at": 303, "open_by_handle_at": 304, "mknod": 133, "mknodat": 259,
    # credentials
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setgroups": 116, "setresuid": 117,
    "setresgid": 119, "setfsuid": 122, "setfsgid": 123, "capset": 126,
    # kernel attack surface
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250,
    "add_key": 248, "request_key": 249, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "personality": 135, "acct": 163, "swapon": 167, "swapoff": 168,
    "reboot": 169, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
    "sethostname": 170, "setdomainname": 171, "quotactl": 179, "lookup_dcookie": 212, "iopl": 172,
    "ioperm": 173, "syslog": 103, "vhangup": 153, "uselib": 134, "fanotify_init": 300,
}
_SYS_CLONE, _SYS_CLONE3 = 56, 435
_RET_ALLOW, _RET_KILL = 0x7FFF0000, 0x80000000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06


def _errno(code: int) -> int:
    return 0x00050000 | code


def seccomp_program() -> list[tuple[int, int, int, int]] | None:
    """The BPF filter as (code, jt, jf, k) instructions, or None on an unsupported architecture."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    deny = sorted(set(_X86_64_DENY.values()))
    # Layout: [0] ld arch, [1] jeq arch, [2] ld nr, [3] x32 check, [4] clone, [5] clone3,
    # [6 .. 6+n) deny list, ALLOW, CLONE_CHECK (ld flags, jset, ALLOW), ENOSYS, EPERM, KILL.
    # BPF jumps only go forward, so the clone check has its own ALLOW.
    n = len(deny)
    allow = 6 + n
    clone_check = allow + 1
    enosys, eperm, kill = allow + 4, allow + 5, allow + 6

    def jump(at: int, target: int) -> int:
        return target - at - 1

    prog = [
        (_LD_W_ABS, 0, 0, 4),
        (_JEQ_K, 0, jump(1, kill), _AUDIT_ARCH_X86_64),
        (_LD_W_ABS, 0, 0, 0),
        (_JGE_K, jump(3, eperm), 0, 0x40000000),  # x32 ABI aliases
        (_JEQ_K, jump(4, clone_check), 0, _SYS_CLONE),
        (_JEQ_K, jump(5, enosys), 0, _SYS_CLONE3),  # glibc falls back to clone(), which we can inspect
    ]
    prog += [(_JEQ_K, jump(6 + i, eperm), 0, nr) for i, nr in enumerate(deny)]
    prog += [
        (_RET_K, 0, 0, _RET_ALLOW),
        (_LD_W_ABS, 0, 0, 16),  # low 32 bits of args[0]: the clone flags
        (_JSET_K, 0, jump(clone_check + 1, eperm), CLONE_THREAD),
        (_RET_K, 0, 0, _RET_ALLOW),  # a thread
        (_RET_K, 0, 0, _errno(errno.ENOSYS)),
        (_RET_K, 0, 0, _errno(errno.EPERM)),
        (_RET_K, 0, 0, _RET_KILL),
    ]
    assert len(prog) == kill + 1
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def install_seccomp() -> bool:
    prog = seccomp_program()
    if prog is None:
        return False
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return _libc.prctl(PR_SET_SECCOMP, 2, ctypes.byref(fprog), 0, 0) == 0
