"""A quiet node while latency is timed: measurements pause the node's other compute work.

Candidates are timed on the node where other trials fine-tune at the same time. On a small
machine that inflates and scatters the measured latency (on a 2-core machine a LeNet-sized
model timed next to one training process reads 1.2-1.8x slower), while the baseline is timed
before any trial starts. So every timing holds the node *exclusively* and every unit of heavy
compute work (a training or validation batch, building a candidate, evaluating it) holds it
*shared*: a timing waits for the batches in flight to end and keeps new ones from starting.

Two ``flock`` files in a per-user directory of the node's temporary folder implement it:

* ``gate``: a timing holds it exclusive while it waits; work takes it shared only while it
  enters, so waiting timings are not starved by a stream of overlapping batches;
* ``node``: work holds it shared for its duration; a timing holds it exclusive.

Locks are per node (every search and process on it agrees), released by the kernel when a
process dies, and a timing gives up waiting after ``timeout_s`` and times anyway, reporting that
the node was not quiet (so a hung or lock-stepped worker cannot stall a search). Work never
waits on another unit of work. Where ``fcntl`` is missing (Windows) both are no-ops.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

POLL_S = 0.002


def default_directory() -> Path:
    """``$TMPDIR/autocompress-quiet-UID``: shared by every process of this user on the node."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"autocompress-quiet-{uid}"


class QuietNode:
    """Exclusive timings, shared work, on one node (see the module docstring).

    Args:
        directory: Where the two lock files live (default :func:`default_directory`).
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else default_directory()
        self._local = threading.local()

    @contextlib.contextmanager
    def work(self) -> Iterator[None]:
        """Hold the node shared for one unit of compute work (waits while a timing runs).

        Re-entrant within a thread (nested work holds the lock once).
        """
        if fcntl is None or getattr(self._local, "depth", 0):
            with self._nested():
                yield
            return
        gate, node = self._open("gate"), self._open("node")
        try:
            fcntl.flock(gate, fcntl.LOCK_SH)
            try:
                fcntl.flock(node, fcntl.LOCK_SH)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
            try:
                with self._nested():
                    yield
            finally:
                fcntl.flock(node, fcntl.LOCK_UN)
        finally:
            os.close(gate)
            os.close(node)

    @contextlib.contextmanager
    def _nested(self) -> Iterator[None]:
        """Count this thread's work depth for the duration of the block."""
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    @contextlib.contextmanager
    def timing(self, timeout_s: float) -> Iterator[bool]:
        """Hold the node exclusively while timing; yields whether it was quiet.

        Waits at most ``timeout_s`` for work in flight to end (``0`` does not wait at all and
        yields False). Inside :meth:`work` of the same thread it yields False at once: waiting
        on its own shared hold would never end.
        """
        if fcntl is None or timeout_s <= 0 or getattr(self._local, "depth", 0):
            yield False
            return
        gate, node = self._open("gate"), self._open("node")
        deadline = time.monotonic() + timeout_s
        held: list[int] = []
        try:
            for fd in (gate, node):
                if not _poll_exclusive(fd, deadline):
                    break
                held.append(fd)
            quiet = len(held) == 2
            if not quiet:  # let work go on while we time anyway
                for fd in reversed(held):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                held.clear()
            yield quiet
        finally:
            for fd in reversed(held):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(gate)
            os.close(node)

    def _open(self, name: str) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        return os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)


def _poll_exclusive(fd: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)


_NODE: QuietNode | None = None


def quiet_node() -> QuietNode:
    """The :class:`QuietNode` of this process, on the default directory."""
    global _NODE
    if _NODE is None:
        _NODE = QuietNode()
    return _NODE
