"""Run one command in a throw-away sandbox, with a hard wall-clock limit and bounded reads.

With bubblewrap (``bwrap``, Debian package ``bubblewrap``) each run gets

* its own user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``): no network, no view of
  other processes, and every process it starts dies with it (the namespace's init is killed at the limit);
* a read-only view of the system directories, the Python installation, the virtual environment and the
  ``klcourse`` package — and nothing else of the host: no instructor book, no other submission, no gradebook,
  no manifest (its secret derives the per-student data);
* a private, size-limited ``/tmp`` (tmpfs) and a small ``/dev/shm`` as its only writable places (``/dev``
  itself is read-only: bwrap's ``/dev`` is a tmpfs without a size limit), and the uid ``nobody``;
* rlimits on memory, file size, processes and CPU time, and a seccomp filter (:func:`seccomp_program`) against
  the two ways of holding memory that the address-space limit does not count: ``memfd_create`` and SysV
  ``shmget``. There is no cgroup memory limit: socket and pipe buffers stay bounded only by the kernel's quotas.

Without bwrap (or when user namespaces are unavailable) :func:`run` falls back to a plain subprocess in a
new session with the same rlimits, and :data:`UNSANDBOXED` is reported by the grader in its output and in the
gradebook. Either way the caller's reads are bounded in time and size: a grandchild that keeps a pipe open,
or floods it, cannot delay the grader beyond the limit.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import klcourse

UNSANDBOXED = "UNSANDBOXED: bubblewrap is not available, submissions run as plain processes with rlimits only"
#: Read at most this much from each channel of one run (bytes).
MAX_CHANNEL = 16 * 2**20
#: Private /tmp of a sandbox (bytes).
TMP_SIZE = 256 * 2**20
#: Private /dev/shm of a sandbox (bytes).
SHM_SIZE = 16 * 2**20


@dataclass
class Limits:
    wall: float = 60.0  # seconds for the whole run
    memory: int = 2 * 2**30  # address space, bytes
    file_size: int = 64 * 2**20  # largest file a run may write
    processes: int = 16  # processes (threads count) in the run: a sandbox's own count, see _NPROC_SHIM
    open_files: int = 256


@dataclass
class RunResult:
    returncode: int | None
    timed_out: bool
    channels: dict = field(default_factory=dict)  # name -> bytes read
    truncated: set = field(default_factory=set)  # channels that hit MAX_CHANNEL
    elapsed: float = 0.0
    sandboxed: bool = True


#: What a Python process needs of /etc (not shadow files, keys or the host's configuration).
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "mime.types", "nsswitch.conf",
        "passwd", "group", "alternatives")


def _host_paths() -> list[Path]:
    """What the sandbox needs to see read-only: system, Python installation, venv, the package."""
    paths = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")]
    paths += [Path("/etc") / name for name in _ETC]
    paths += [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.prefix).absolute()]
    paths.append(Path(klcourse.__file__).resolve().parent)
    out = []
    for p in paths:
        if p.exists() and p not in out:
            out.append(p)
    return out


#: ``platform.machine()`` -> (AUDIT_ARCH, syscall numbers of memfd_create and shmget, x32 bit or 0)
_SECCOMP_ARCH = {"x86_64": (0xC000003E, (319, 29), 0x40000000), "aarch64": (0xC00000B7, (279, 194), 0)}


@cache
def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter (for ``bwrap --seccomp FD``) that makes ``memfd_create`` and ``shmget`` fail
    with EPERM, and every syscall of a foreign ABI (32-bit, x32) too; None on other machines.

    Both create memory that no rlimit counts (RLIMIT_AS counts mappings; a memfd of 64 MB per descriptor ×
    256 descriptors × 64 processes, or SysV segments written and detached, would exhaust the host's RAM).
    """
    import platform
    import struct

    spec = _SECCOMP_ARCH.get(platform.machine())
    if spec is None:
        return None
    arch, blocked, x32 = spec
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    n = len(blocked)
    prog = [(ld, 0, 0, 4),  # seccomp_data.arch
            (jeq, 1, 0, arch),  # native ABI: go on
            (ret, 0, 0, deny),
            (ld, 0, 0, 0)]  # seccomp_data.nr
    if x32:
        prog.append((jge, n + 1, 0, x32))  # x32 syscalls -> deny
    for i, nr in enumerate(blocked):
        prog.append((jeq, n - i, 0, nr))  # -> deny
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def _program_fd(program: bytes) -> int:
    """A readable descriptor holding ``program`` (a pipe: it is much smaller than a pipe's buffer)."""
    read, write = os.pipe()
    os.write(write, program)
    os.close(write)
    return read


def bwrap_command(binds_ro: dict, env: dict, seccomp_fd: int | None = None) -> list[str]:
    """The bwrap prefix: ``binds_ro`` maps host paths to sandbox paths (read-only); ``seccomp_fd`` a descriptor
    holding :func:`seccomp_program` (passed to the bwrap process)."""
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
           "--die-with-parent", "--new-session", "--clearenv"]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    # The private /tmp first: a venv or checkout that lives under the host's /tmp (a CI clone, say) is then
    # bound on top of it, read-only, instead of being hidden by it.
    cmd += ["--dev", "/dev", "--proc", "/proc", "--size", str(TMP_SIZE), "--tmpfs", "/tmp"]
    # /dev is a tmpfs without a size limit (its files are memory, outside RLIMIT_AS): a small /dev/shm on it
    # (POSIX semaphores, multiprocessing), and /dev itself read-only (below)
    cmd += ["--size", str(SHM_SIZE), "--tmpfs", "/dev/shm"]
    for p in _host_paths():
        if p.is_symlink() and str(p) in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
            cmd += ["--symlink", os.readlink(p), str(p)]
        else:
            cmd += ["--ro-bind", str(p), str(p)]
    for host, inside in binds_ro.items():
        cmd += ["--ro-bind", str(host), str(inside)]
    cmd += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", "/tmp"]  # only /tmp and /dev/shm are writable
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd


@cache
def bwrap_available() -> bool:
    """Whether bwrap exists and can create the namespaces this module uses (checked once)."""
    if shutil.which("bwrap") is None:
        return False
    program = seccomp_program()
    fd = _program_fd(program) if program else None
    try:
        probe = subprocess.run(bwrap_command({}, {}, fd) + ["/bin/true" if os.path.exists("/bin/true") else "true"],
                               capture_output=True, timeout=20, pass_fds=() if fd is None else (fd,))
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        if fd is not None:
            os.close(fd)
    return probe.returncode == 0


#: Run first inside bwrap: sets RLIMIT_NPROC *after* the sandbox's user namespace exists, then execs the command.
#: Set on bwrap itself, the limit would count every process of the grader's uid (the instructor's desktop, the
#: other sandboxes of a parallel run: one sandbox's children could stop its neighbour from starting); set inside,
#: the kernel (>= 5.14, per-user-namespace counts) counts the sandbox's own processes. A grader running as root
#: is not limited (the kernel exempts the host's root), see the README.
_NPROC_SHIM = ("import os, resource, sys\n"
               "n, hard = int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NPROC)[1]\n"
               "n = n if hard == resource.RLIM_INFINITY else min(n, hard)\n"
               "resource.setrlimit(resource.RLIMIT_NPROC, (n, n))\n"
               "os.execvp(sys.argv[2], sys.argv[2:])")
#: RLIMIT_NPROC of an unsandboxed run: there it counts every process of the grader's uid.
FALLBACK_PROCESSES = 64


def _limit_child(limits: Limits, fallback: bool):
    def apply():
        soft = [(resource.RLIMIT_AS, limits.memory), (resource.RLIMIT_FSIZE, limits.file_size),
                (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0),
                (resource.RLIMIT_CPU, int(limits.wall) + 5)]
        if fallback and os.getuid() != 0:  # root ignores RLIMIT_NPROC; under bwrap it is set inside (_NPROC_SHIM)
            soft.append((resource.RLIMIT_NPROC, max(limits.processes, FALLBACK_PROCESSES)))
        for which, value in soft:
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass
    return apply


def run(argv: list[str], *, limits: Limits, stdin_data: bytes = b"", binds_ro: dict | None = None,
        env: dict | None = None, sandbox: bool | None = None) -> RunResult:
    """Run ``argv`` (sandboxed when possible) and read its stdout and stderr, bounded in time and size.

    The whole process group (and, under bwrap, the whole PID namespace) is killed at ``limits.wall``;
    reads stop at the limit too, whoever still holds the pipes.
    """
    use_bwrap = bwrap_available() if sandbox is None else sandbox
    env = dict(env or {})
    base_env = {"PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
                "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/.mpl",
                "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                # the klcourse the caller runs (bound read-only at the same path, see _host_paths), ahead of the
                # venv's own: an editable install's finder points at a checkout the sandbox does not see
                "PYTHONPATH": str(Path(klcourse.__file__).resolve().parent.parent)}
    base_env.update(env)
    program = seccomp_program() if use_bwrap else None
    seccomp_fd = _program_fd(program) if program else None
    if use_bwrap:
        cmd = bwrap_command(binds_ro or {}, base_env, seccomp_fd) + [sys.executable, "-I", "-S", "-c", _NPROC_SHIM,
                                                                     str(limits.processes), *argv]
        popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        cmd = argv
        popen_env = base_env
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=popen_env, start_new_session=True,
                                preexec_fn=_limit_child(limits, not use_bwrap), close_fds=True,
                                pass_fds=() if seccomp_fd is None else (seccomp_fd,))
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin_data), daemon=True)
    feeder.start()
    channels = {"stdout": proc.stdout, "stderr": proc.stderr}
    data = {name: bytearray() for name in channels}
    truncated: set = set()
    open_fds = {pipe.fileno(): name for name, pipe in channels.items()}
    deadline = start + limits.wall
    exited_at = None
    timed_out = False
    while True:
        now = time.monotonic()
        if proc.poll() is not None and exited_at is None:
            exited_at = now
        if not open_fds and exited_at is not None:
            break
        if exited_at is not None and now - exited_at > 1.0:  # a grandchild holds a pipe after the run ended
            break
        if now >= deadline:
            timed_out = proc.poll() is None
            break
        ready, _, _ = select.select(list(open_fds), [], [], min(0.1, deadline - now))
        for fd in ready:
            chunk = os.read(fd, 65536)
            name = open_fds[fd]
            if not chunk:
                del open_fds[fd]
                continue
            room = MAX_CHANNEL - len(data[name])
            data[name] += chunk[:max(room, 0)]
            if len(chunk) > room:
                truncated.add(name)
    _kill(proc)
    for pipe in channels.values():
        pipe.close()
    return RunResult(proc.returncode, timed_out, {k: bytes(v) for k, v in data.items()}, truncated,
                     time.monotonic() - start, use_bwrap)


def _feed(pipe, data: bytes) -> None:
    """Write the job to the run's stdin (in a thread: a run that never reads cannot block the grader)."""
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the run's process group; under bwrap that takes its PID namespace down with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
