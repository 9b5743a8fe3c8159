"""Folders the test process cannot write to and disks that are full, made for real.

Read-only: each folder mode 0o555 and file 0o444. Root may write there anyway, so as root the
block runs with the effective user id of ``nobody`` (restored afterwards): the folder must
then be reachable by every user, as ``shared_folder`` makes it (pytest's tmp_path is not).
A full disk: os.write fails with ENOSPC for files under a folder (the operating system's
call patched, not the code under test).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A new folder under the system's temporary folder that every user can read."""
    path = Path(tempfile.mkdtemp(prefix="facerec-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        _set_modes(path, 0o755, 0o644)
        shutil.rmtree(path)


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """Inside the block nothing under ``folder`` can be created, changed or deleted."""
    _set_modes(folder, 0o555, 0o444)
    as_root = os.geteuid() == 0
    try:
        if as_root:
            os.seteuid(NOBODY)
        yield
    finally:
        if as_root:
            os.seteuid(0)
        _set_modes(folder, 0o755, 0o644)


def _set_modes(folder: Path, folders: int, files: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(folders if path.is_dir() else files)


def fill_disk(monkeypatch, folder: Path, after_bytes: int = 0) -> list[int]:
    """From now on os.write to a file under ``folder`` raises ENOSPC once ``after_bytes``
    bytes have been written to such files (a write may be cut short at the limit, as on a
    real disk). Returns the list of bytes written before the disk filled, for assertions."""
    real_write, written = os.write, []
    root = str(folder.resolve())

    def write(descriptor: int, data) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            target = ""
        if not target.startswith(root + os.sep):
            return real_write(descriptor, data)
        room = after_bytes - sum(written)
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done = real_write(descriptor, bytes(data[:room]))
        written.append(done)
        return done

    monkeypatch.setattr(os, "write", write)
    return written
