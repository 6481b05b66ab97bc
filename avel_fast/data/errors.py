"""Errors and warnings of the AVE data layer (docs/data.md#validation): each names the file, the dataset and what
is wrong."""
from __future__ import annotations

from pathlib import Path


class AVEFormatError(ValueError):
    """A file of an AVE directory is missing or does not follow the format of docs/data.md#files.

    ``file`` is the path, ``dataset`` the h5 dataset (or ``"line N"`` of a text file, ``""`` for the whole file),
    ``problem`` what is wrong. ``str()`` reads ``"<file> [<dataset>]: <problem>"``, or ``"<file>: <problem>"``
    for the whole file.
    """

    def __init__(self, file: str | Path, dataset: str, problem: str) -> None:
        self.file = str(file)
        self.dataset = dataset
        self.problem = problem
        super().__init__(f"{self.file}{f' [{dataset}]' if dataset else ''}: {problem}")

    def __reduce__(self):
        return type(self), (self.file, self.dataset, self.problem)


class AVEFormatWarning(UserWarning):
    """A non-fatal oddity of AVE files, e.g. the event of length 0 in the real `Annotations.txt`."""
