"""Atomic, durable file writes and a per-file lock.

A write goes to a temporary file next to the target, is flushed to disk (``fsync``), then renamed
over the target, and the folder is synced so the rename survives a power cut. The temporary file's
name carries the writer's process id (``.<name>.sf-<pid>-<random>.tmp``): a writer killed with
SIGKILL cannot clean up after itself, so the next write to any file in that folder removes the
temporary files whose process is gone. Readers therefore see either the old or the new file, never
a partial one, and killed writers leave nothing behind once the folder is written again.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_TMP = re.compile(r"^\..+\.sf-(\d+)-[0-9a-f]{8}\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno != errno.ESRCH  # EPERM: alive, owned by someone else
    return True


def remove_orphans(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files in ``folder`` left by spikeflow writers that no longer run; return them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TMP.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass  # another writer removed it first
    return removed


def fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # some platforms cannot open folders; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path`` atomically.

    An interrupted or failing write leaves any previous file at ``path`` untouched and removes the
    temporary file (a killed process's file is removed by the next write in that folder). With
    ``durable`` (default) the file and the folder are synced to disk before returning.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target.parent)
    tmp_path = target.parent / f".{target.name}.sf-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies
    try:
        yield tmp_path
        if durable:
            fsync_path(tmp_path)
        os.replace(tmp_path, target)
        if durable:
            fsync_path(target.parent, directory=True)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` across processes (blocks until it is free).

    The lock is taken on a hidden sidecar file ``.<name>.lock`` (the data file itself is replaced
    by renames, so a lock on it would not be shared by the next writer). The holder deletes the
    sidecar on release; a waiter that then wakes up on the deleted file sees that it is gone and
    locks the new one, so no lock file is left behind. Not reentrant. POSIX only; elsewhere it
    does nothing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # we hold the lock on the sidecar that is in place
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed it while we waited: lock the new one
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)
