"""The run directory: checked before any work, owned by one run at a time, cleared only on request,
and only of what a run writes.

A lock file (``train.lock``, holding the owner's pid, host and start time) is held with
``flock`` for the whole run. The kernel drops the lock when its process dies, even by
``kill -9``, so a dead run never blocks the next one; its leftover file only names who held
it last. On file systems without ``flock`` the recorded pid decides: a dead local process's
lock is taken over, anything else refused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

LOCK_NAME = "train.lock"
# Everything a run writes into its directory (besides the lock), relative to it: its files, and
# patterns for the files whose names it does not choose. --overwrite removes exactly these, a
# set-up that fails those it created; the temporaries of the files (".NAME.tmp-PID", the durable
# write's, see _util.atomic) that a kill during a write leaves go when a run claims the directory.
RUN_FILES = ("config.json", "steps.csv", "epochs.csv", "checkpoints/last.pt", "checkpoints/previous.pt",
             "checkpoints/best.pt")
RUN_PATTERNS = ("tensorboard/events.out.tfevents.*",)
SUBDIRS = ("checkpoints", "tensorboard")
CHECKPOINT_FILES = tuple(name for name in RUN_FILES if name.startswith("checkpoints/"))
# Checkpoint-sized files on disk at once during a save: last.pt, previous.pt, best.pt, and the
# temporary of the one being written (train.checkpoint.save_atomic).
SAVE_FOOTPRINT = len(CHECKPOINT_FILES) + 1
_LISTED = 5  # names given in a log line; the rest are counted


class RunDirError(ValueError):
    """--out cannot hold this run; the message names the path and the fix in one line."""


class RunDir:
    """An --out directory claimed by this process (rank 0) for one run."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd
        self._found: set[Path] = set()  # the run files and folders there when it was claimed

    @classmethod
    def claim(cls, path: Path, *, resume_run_id: str | None, overwrite: bool,
              data: Path | None = None) -> RunDir:
        """Check ``path`` (kind, writable, outside ``data``), lock it, remove temporaries an
        interrupted write left, and check what it holds.

        A new run (``resume_run_id`` None) needs a directory without an earlier run's records,
        or ``overwrite``; a resumed run needs its own records there (or none).
        """
        if data is not None:
            _check_outside(path, data)
        _make_dir(path)
        run_dir = cls(path, _lock(path))
        try:
            run_dir._remove_temporaries()
            run_dir._check_contents(resume_run_id, overwrite=overwrite)
        except BaseException:
            run_dir.release()
            raise
        run_dir._found = {*run_dir.run_files(), *(p for p in run_dir._subdirs() if p.exists())}
        return run_dir

    def run_files(self) -> list[Path]:
        """The files of a run in this directory: RUN_FILES and RUN_PATTERNS that exist."""
        named = [self.path / name for name in RUN_FILES if (self.path / name).is_file()]
        return named + sorted(p for pattern in RUN_PATTERNS for p in self.path.glob(pattern) if p.is_file())

    def _subdirs(self) -> list[Path]:
        return [self.path / name for name in SUBDIRS]

    def _remove_temporaries(self) -> None:
        """Delete the temporaries of run files that a kill during a write left (the lock is
        ours, so no one else is writing them), saying so."""
        patterns = [(self.path / name).parent / f".{Path(name).name}.tmp-*" for name in RUN_FILES]
        leftovers = sorted(p for pattern in patterns for p in pattern.parent.glob(pattern.name)
                           if p.is_file())
        for leftover in leftovers:
            leftover.unlink()
        if leftovers:
            _logger.warning("removed %d temporary file(s) an interrupted write left in %s: %s",
                            len(leftovers), self.path, _few(leftovers, self.path))

    def _check_contents(self, resume_run_id: str | None, *, overwrite: bool) -> None:
        for name in SUBDIRS:
            if (self.path / name).exists() and not (self.path / name).is_dir():
                raise RunDirError(f"--out {self.path}: {self.path / name} is a file where the run keeps a "
                                  "folder; move it away or pick another --out")
        held = list(dict.fromkeys(p.relative_to(self.path).parts[0] for p in self.run_files()))
        if not held or overwrite:
            return
        owner = _recorded_run_id(self.path / "config.json")
        if resume_run_id is None:
            last = self.path / "checkpoints" / "last.pt"
            carry_on = f"continue it with --resume {last}, " if last.exists() else ""
            raise RunDirError(f"--out {self.path} holds an earlier run ({', '.join(held)}); {carry_on}"
                              "start over with --overwrite (deletes its records and checkpoints), "
                              "or pick another --out")
        if owner is not None and owner != resume_run_id:
            raise RunDirError(f"--out {self.path} holds another run (id {owner}) than the checkpoint's "
                              f"(id {resume_run_id}); resume into the checkpoint's own run directory "
                              "or an empty --out")

    def clear_previous_run(self) -> None:
        """--overwrite: remove the earlier run's files (RUN_FILES, RUN_PATTERNS) and nothing else;
        whatever else is there stays, named in a log line."""
        for target in self.run_files():
            target.unlink()
        self._remove_empty_subdirs(self._subdirs())
        others = sorted(p for folder in (self.path, *self._subdirs()) if folder.is_dir()
                        for p in folder.iterdir()
                        if p.name != LOCK_NAME and p not in self._subdirs())
        if others:
            _logger.warning("--overwrite removed the earlier run's records and checkpoints in %s and kept "
                            "what a run does not write: %s", self.path, _few(others, self.path))

    def remove_created(self) -> None:
        """After a failed set-up: remove the run files and folders this attempt created, so that
        the corrected command is not refused as an earlier run."""
        for target in self.run_files():
            if target not in self._found:
                target.unlink()
        self._remove_empty_subdirs([p for p in self._subdirs() if p not in self._found])

    @staticmethod
    def _remove_empty_subdirs(folders: list[Path]) -> None:
        for folder in folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def check_free_space(self, checkpoint_bytes: int) -> None:
        """Room for every file a save needs at once (SAVE_FOOTPRINT checkpoints of about
        ``checkpoint_bytes``), less what the run's checkpoints there already hold."""
        files = [self.path / name for name in CHECKPOINT_FILES]
        held = sum(p.stat().st_size for p in files if p.is_file())
        total = SAVE_FOOTPRINT * checkpoint_bytes
        free = shutil.disk_usage(self.path).free
        if free < total - held:
            mib = 2**20
            holding = f", of which its checkpoints there hold {held / mib:.0f} MiB" if held else ""
            raise RunDirError(
                f"--out {self.path} has {free / mib:.0f} MiB free, and a run's saves need about "
                f"{total / mib:.0f} MiB at once (last.pt, previous.pt, best.pt and the temporary of the one "
                f"being written, about {checkpoint_bytes / mib:.0f} MiB each{holding}); free some space or "
                "pick another --out")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the lock."""
        if self._lock_fd is None:
            return
        lock = self.path / LOCK_NAME
        try:
            if os.path.samestat(os.fstat(self._lock_fd), os.stat(lock)):
                lock.unlink()
        except OSError:
            pass  # already gone: nothing to clean up
        os.close(self._lock_fd)
        self._lock_fd = None


def _few(paths: list[Path], root: Path) -> str:
    names = [str(p.relative_to(root)) for p in paths[:_LISTED]]
    return ", ".join(names) + (f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else "")


def _check_outside(path: Path, data: Path) -> None:
    """--out must not lie inside the data: its folders would be read as data (a class of its own)."""
    out, root = path.expanduser().resolve(), data.expanduser().resolve()
    if out == root or out.is_relative_to(root):
        raise RunDirError(f"--out {path} is inside --data {data}: the run's files would be read as part of "
                          f"the data; pick an --out outside {data}")


def _make_dir(path: Path) -> None:
    """Create --out (and its parents), or explain in one line why it cannot be."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a directory; pass a directory (created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"--out {path}: a part of this path is a file, not a directory; "
                          "pick another --out") from None
    except OSError as err:
        raise RunDirError(f"--out {path} cannot be created ({err.strerror}); pick a writable location "
                          "with --out") from None


def _owner_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv)}


def _read_record(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        record = json.loads(os.read(fd, 65536).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "another process"
    return f"pid {record.get('pid')} on {record.get('host')} (started {record.get('started')})"


def _lock(path: Path) -> int:
    """Open, lock and fill in ``path/train.lock``; returns the descriptor that holds the lock."""
    lock = path / LOCK_NAME
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunDirError(f"--out {path} is not writable ({err.strerror}); pick a writable directory "
                              "with --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_record(fd)
            os.close(fd)
            raise RunDirError(f"--out {path} is in use by {_describe(record)}; wait for that run to end or "
                              "pick another --out") from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            _check_recorded_owner(fd, lock)  # no flock on this file system: trust the record
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous owner removed the file while we opened it: take the new one
    previous = _read_record(fd)
    if previous and previous.get("pid") != os.getpid():
        _logger.warning("took over %s from %s, which is no longer running", lock, _describe(previous))
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(_owner_record()) + "\n").encode("utf-8"))
    os.fsync(fd)
    return fd


def _check_recorded_owner(fd: int, lock: Path) -> None:
    """Without flock: refuse a lock whose recorded owner lives, or lives on another host."""
    record = _read_record(fd)
    if not record or record.get("pid") == os.getpid():
        return
    local = record.get("host") == socket.gethostname()
    if local and not _alive(record.get("pid")):
        return
    os.close(fd)
    fix = "wait for that run to end" if local else f"if that run is over, delete {lock}"
    raise RunDirError(f"--out {lock.parent} is in use by {_describe(record)}; {fix}, or pick another --out")


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _recorded_run_id(config_json: Path) -> str | None:
    """The run id in an earlier run's config.json (None when absent or unreadable)."""
    try:
        record = json.loads(config_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("run_id") if isinstance(record, dict) else None
