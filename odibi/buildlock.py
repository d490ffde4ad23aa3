"""One build per project at a time: an advisory lock on `.odibi/build.lock`.

`flock` on an open file: the OS releases it when the process ends, however it ends
(kill -9 included), so a crashed build never leaves a stale lock. The holder writes who
it is (pid, command, start time) into the file so that a second build can say whom it
waits for. Read-only commands (explain, ls, show, validate) never take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from odibi.errors import LockedError, UsageError

LOCK_NAME = "build.lock"


class BuildLock:
    def __init__(self, state_dir: Path, command: str) -> None:
        self.path = state_dir / LOCK_NAME
        self.command = command
        self.fd: int | None = None

    def acquire(self, *, wait: bool, on_wait: Callable[[str], None] | None = None) -> None:
        """Take the lock; if another process holds it, wait (saying for whom, once) or,
        with wait=False, raise LockedError."""
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder} is a file; odibi keeps its build state in a directory "
                             "of that name", hint=f"move {folder} away")
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if not wait:
                os.close(fd)
                raise LockedError(f"another odibi build is running in this project ({holder})",
                                  hint="wait for it, or run without --no-wait to wait") from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd
        info = json.dumps({"pid": os.getpid(), "command": self.command, "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "process unknown"
        since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
        return f"pid {info.get('pid', '?')}, '{info.get('command', '?')}', since {since}"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> BuildLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
