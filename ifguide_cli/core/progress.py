"""A minimal progress interface so core code can report long work without knowing about the terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Task(Protocol):
    def advance(self, n: float = 1) -> None: ...

    def set(self, completed: float | None = None, total: float | None = None, info: str | None = None) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: float | None = None) -> AbstractContextManager[Task]: ...


class _NullTask:
    def advance(self, n: float = 1) -> None:
        pass

    def set(self, completed=None, total=None, info=None) -> None:
        pass


class NullReporter:
    """Reports nothing: the default for library use and tests."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_NullTask]:
        yield _NullTask()


NULL = NullReporter()
