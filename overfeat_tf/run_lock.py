"""One live writer per run directory: `<model_dir>/run.lock`.

The training chief takes the lock before it writes anything into the run directory and
holds it until it exits; workers of a multi-worker run share the directory by design and
take no lock, nor do evaluation and export, which only read. The lock is an exclusive
`flock` on the file, so the kernel frees it when its holder dies, even by kill -9; the
file's content (host, pid, start time) names the holder. A file left behind by a dead
holder is taken over with a note. Local file systems only: a remote `model_dir`
(`gs://...`) is not locked.
"""

from __future__ import annotations

import atexit
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Callable

from overfeat_tf.cli import UserError

LOCK_FILE = "run.lock"


class RunInUse(UserError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """A held lock; `release()` (or the process's exit) frees it."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Removes the lock file and frees the lock; idempotent."""
        if self._fd < 0:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _holder(content: str) -> str:
    try:
        info = json.loads(content)
        return f"pid {info['pid']} on {info['host']} (started {info['started']})"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


def acquire(model_dir: str, note: Callable[[str], None] = print) -> RunLock | None:
    """Takes `<model_dir>/run.lock`, creating `model_dir` if needed; held until
    `release()` or the process's exit.

    Args:
      model_dir: the run directory; remote paths (with "://") are not locked (None).
      note: called with one line when a lock left by a dead process is taken over.

    Raises:
      RunInUse: a live process holds the lock (the message names it).
      NotADirectoryError: `model_dir` is a file. OSError: it cannot be created or written.
    """
    if "://" in model_dir:
        return None
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise NotADirectoryError(f"{model_dir!r} is a file, not a directory")
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            content = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise RunInUse(
                f"{model_dir!r} is in use by {_holder(content)}; wait for it to finish, "
                f"or stop it (lock file: {path})"
            ) from None
        # The holder before us may have removed the file while we opened it: retry on
        # the file that is there now.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    left = os.pread(fd, 4096, 0).decode(errors="replace")
    if left.strip():
        note(f"Taking over {path}, left by {_holder(left)}, which is no longer running.")
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": started})
    os.ftruncate(fd, 0)
    os.pwrite(fd, mine.encode() + b"\n", 0)
    os.fsync(fd)
    lock = RunLock(path, fd)
    atexit.register(lock.release)
    return lock
