"""Atomic file writing: write to a temp file in the same folder, fsync, rename.

A reader (or a crash, a kill, a full disk) never sees a half-written file: either the old file
or the complete new one. Used for dataset shards, manifests, checkpoints and run metadata.
`try_lock` keeps two processes from working on the same output at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and rename it to
    ``path``; when the block raises, delete it. The caller writes the file at the yielded path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: it creates 0600 files, and the finished file should get the usual permissions
    # (0666 minus the umask, applied by the kernel here); O_EXCL keeps the name unique.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Render a matplotlib figure to PNG, write it to ``path`` atomically and close the figure."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


@contextmanager
def try_lock(path: str | Path) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) while the block runs.

    Yields True when this process holds it, or False at once, without waiting, when another
    holds it. The operating system drops a lock when its holder exits, crashed or killed, so a
    lock file left behind never blocks anyone. (POSIX ``flock``; two opens conflict even within
    one process.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
