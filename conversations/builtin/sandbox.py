"""Run the model's python in bubblewrap.

What the code sees: /usr read-only (without /usr/local), an empty /tmp, its
conversation's own directory at /mnt/data, no network (its own empty network
namespace), no other process, none of the host's environment. The process runs
under a user id of its own (when the worker is root, a fresh one per call), so
the process limit counts this call's processes only and nothing of the host's
files is readable through ownership. Limits: CPU seconds, address space,
processes, file size and open files as rlimits; wall time and output size by the
caller, who kills the sandbox (bwrap's --die-with-parent takes everything in it
along).
"""

from __future__ import annotations

import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

MOUNT = "/mnt/data"
# User ids far above any a distribution hands out; one is picked per call.
_UID_FIRST = 1_100_000
_UID_SPAN = 1_000_000


class SandboxUnavailable(RuntimeError):
    """bubblewrap or the sandbox's python is missing: the tool cannot run."""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    wall_seconds: float
    memory_mb: int
    processes: int
    file_mb: int
    output_chars: int

    @classmethod
    def from_settings(cls, *, wall_seconds: float | None = None) -> Limits:
        return cls(
            cpu_seconds=settings.SANDBOX_CPU_SECONDS,
            wall_seconds=wall_seconds if wall_seconds is not None else settings.TOOL_CALL_SECONDS,
            memory_mb=settings.SANDBOX_MEMORY_MB,
            processes=settings.SANDBOX_PROCESSES,
            file_mb=settings.SANDBOX_FILE_MB,
            output_chars=settings.TOOL_OUTPUT_CHARS,
        )


@dataclass(frozen=True)
class Run:
    output: str
    exit_code: int | None
    # "" when it ended by itself; else which limit ended it.
    stopped_by: str
    cut: int  # characters of output dropped past the limit
    seconds: float

    def for_model(self) -> str:
        """The tool message the model reads."""
        text = self.output if self.output else "(no output)"
        if self.cut:
            text += f"\n[output cut: {self.cut} more characters were not kept]"
        reason = {
            "wall": "the wall-time limit was reached",
            "cancelled": "the user stopped the answer",
            "cpu": "the CPU-time limit was reached",
        }.get(self.stopped_by, self.stopped_by)
        if reason:
            text += f"\n[stopped: {reason}]"
        return text


def workdir(key: str) -> Path:
    """The directory a conversation's (or an API container's) code keeps files in."""
    if not key or not all(c.isalnum() or c in "-_" for c in key):
        raise ValueError(f"bad sandbox key {key!r}")
    return Path(settings.SANDBOX_DIR) / key


def remove_workdir(key: str) -> None:
    shutil.rmtree(workdir(key), ignore_errors=True)


def available() -> str | None:
    """Why the sandbox cannot run here, or None when it can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    if not os.access(settings.SANDBOX_PYTHON, os.X_OK):
        return f"the sandbox's python {settings.SANDBOX_PYTHON} is missing"
    return None


def _command(python: str, dir_fd: int) -> list[str]:
    return [
        "bwrap",
        "--unshare-all",  # user, pid, net, ipc, uts, cgroup: nothing shared
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--ro-bind", "/usr", "/usr",
        "--tmpfs", "/usr/local",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
        # The directory is passed open, so none of its parents need be readable
        # by the sandbox's user.
        "--bind-fd", str(dir_fd), MOUNT,
        "--chdir", MOUNT,
        "--setenv", "HOME", MOUNT,
        "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PYTHONIOENCODING", "utf-8",
        "--setenv", "MPLBACKEND", "Agg",
        python, "-I", "-u", "-",
    ]  # fmt: skip


def _check_reachable(root: Path) -> None:
    # bwrap, already running as the call's user, resolves the directory by its
    # path: every directory above it must let others pass (x), not list (r).
    root.chmod(0o711)
    for parent in root.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise SandboxUnavailable(
                f"{parent} does not let other users pass (chmod o+x), so the sandbox cannot use {root}"
            )


def _own_process_count(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid and len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count


def run_python(code: str, key: str, limits: Limits, *, cancelled=lambda: False) -> Run:
    """Run code in the sandbox with key's directory at /mnt/data."""
    why = available()
    if why:
        raise SandboxUnavailable(why)
    directory = workdir(key)
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _check_reachable(directory.parent)
        uid = _UID_FIRST + secrets.randbelow(_UID_SPAN)
        for path in [directory, *directory.rglob("*")]:
            os.lchown(path, uid, uid)
        directory.chmod(0o700)
        processes = limits.processes
    else:
        # Not root: the code runs as this user, whose processes the limit also
        # counts. Run tool workers as root or as a user of their own.
        uid = os.geteuid()
        processes = _own_process_count(uid) + limits.processes

    def confine() -> None:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        memory = limits.memory_mb << 20
        # SIGXCPU at the soft limit (the code is told), SIGKILL a second later.
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        for limit, value in (
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_NPROC, processes),
            (resource.RLIMIT_FSIZE, limits.file_mb << 20),
            (resource.RLIMIT_NOFILE, 256),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(limit, (value, value))

    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            _command(settings.SANDBOX_PYTHON, dir_fd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=[dir_fd],
            preexec_fn=confine,
            env={},
        )
    finally:
        os.close(dir_fd)
    try:
        process.stdin.write(code.encode())
        process.stdin.close()
    except BrokenPipeError:
        pass
    kept = bytearray()
    dropped = 0
    keep_bytes = limits.output_chars * 4
    stopped_by = ""
    deadline = started + limits.wall_seconds
    stdout = process.stdout
    while True:
        now = time.monotonic()
        if now >= deadline:
            stopped_by = "wall"
            break
        if cancelled():
            stopped_by = "cancelled"
            break
        ready, _, _ = select.select([stdout], [], [], min(0.1, deadline - now))
        if not ready:
            continue
        chunk = os.read(stdout.fileno(), 65536)
        if not chunk:
            break
        room = keep_bytes - len(kept)
        kept += chunk[:room]
        dropped += max(0, len(chunk) - room)
    if not stopped_by:
        try:
            # Output ended; a process that closed it may still run.
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stopped_by = "wall"
    if stopped_by:
        process.kill()
    exit_code = process.wait()
    stdout.close()
    # bwrap passes a killed child's signal on as 128 + its number.
    signalled = exit_code - 128 if exit_code > 128 else -exit_code if exit_code < 0 else 0
    if not stopped_by and signalled in (signal.SIGXCPU, signal.SIGKILL):
        stopped_by = "cpu" if signalled == signal.SIGXCPU else "killed"
    seconds = time.monotonic() - started
    text = kept.decode("utf-8", errors="replace")
    cut = max(0, len(text) - limits.output_chars)
    text = text[: limits.output_chars]
    cut += dropped  # bytes past the cap, counted as characters
    return Run(text, exit_code, stopped_by, cut, seconds)
