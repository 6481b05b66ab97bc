"""Atomic file writes: the content goes to a temporary file in the same directory, moved in place with
`os.replace`, so a killed process leaves either the old or the new file, never half of one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` with ``write(stream)`` on a binary stream, atomically."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):  # an interrupt just after os.replace: already moved
            os.unlink(temporary)
        raise
