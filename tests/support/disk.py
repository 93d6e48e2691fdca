"""Full disks: a tmpfs of its own to fill for real, or an ``os.write`` that fills up."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(directory: Path, size: str = "4m") -> Iterator[None]:
    """``directory`` on a tmpfs of its own (root only), unmounted at the end."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory``: the next write fails with ENOSPC."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    error = 0
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        error = exc.errno or 0
    assert error == errno.ENOSPC
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


class HalfWriteThenFull:
    """``os.write`` as a disk that fills up in the middle of the next append to ``path``:
    half the bytes reach the file, then ENOSPC (what ``write(2)`` does at the brim)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.armed = False
        self.real = os.write

    def __call__(self, fd: int, data: bytes | memoryview, /) -> int:
        if self.armed and os.readlink(f"/proc/self/fd/{fd}") == str(self.path):
            self.armed = False
            self.real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real(fd, data)
