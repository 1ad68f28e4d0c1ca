"""A minimal progress interface so core code can report long work without knowing where the report goes.

Core code only calls `reporter.task(description, total)` and the task's `advance` / `set`. What the user
sees is the reporter's business: bars in a terminal (the CLI's rich reporter), plain lines in a log file
or a pipe (`PlainReporter`), nothing in library use and tests (`NULL`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Protocol, TextIO


class Task(Protocol):
    def advance(self, n: float = 1) -> None: ...

    def set(self, completed: float | None = None, total: float | None = None, info: str | None = None) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: float | None = None) -> AbstractContextManager[Task]: ...


class _NullTask:
    def advance(self, n: float = 1) -> None:
        pass

    def set(self, completed: float | None = None, total: float | None = None, info: str | None = None) -> None:
        pass


class NullReporter:
    """Reports nothing: the default for library use and tests."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_NullTask]:
        yield _NullTask()


NULL = NullReporter()

class PlainReporter:
    """Progress as plain lines for a log file, a pipe, `nohup` or Slurm, where bars would be noise or nothing.

    A task writes a line every `interval` seconds while it runs, and a last one when it ends if it wrote any:

        [train] training 45% 135/300 2.3 it/s ETA 0:01:13 loss 3.21
        [train] training 100% 300/300 2.3 it/s done in 0:02:10

    So a short step stays silent (the command's own status lines say it ran), a long one shows a steady
    heartbeat with its rate and ETA. `interval=0` writes a line on every update, `inf` none.
    """

    def __init__(self, stream: TextIO, label: str | None = None, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream, self.label, self.interval, self.clock = stream, label, interval, clock

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_PlainTask]:
        task = _PlainTask(self, description, total)
        yield task
        if task.lines:  # not after an error either: the error line says what happened
            task.write(done=True)

    def line(self, text: str) -> None:
        prefix = f"[{self.label}] " if self.label else ""
        self.stream.write(prefix + text + "\n")
        self.stream.flush()


class _PlainTask:
    def __init__(self, reporter: PlainReporter, description: str, total: float | None):
        self.reporter, self.description, self.total = reporter, description, total
        self.completed: float = 0
        self.info = ""
        self.started = self.last_line = reporter.clock()
        self.lines = 0
        # the rate counts from the first update, so a resumed task (set(completed=N) at once) and the
        # set-up before the first step do not distort it
        self.origin: tuple[float, float] | None = None

    def advance(self, n: float = 1) -> None:
        self.set(completed=self.completed + n)

    def set(self, completed: float | None = None, total: float | None = None, info: str | None = None) -> None:
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if completed is not None:
            self.completed = completed
            if self.origin is None:
                self.origin = (self.reporter.clock(), completed)
        if self.reporter.clock() - self.last_line >= self.reporter.interval:
            self.write()

    def _rate(self) -> float | None:
        """Steps per second since the first update (None before there is any progress to measure)."""
        if self.origin is None:
            return None
        seconds, done = self.reporter.clock() - self.origin[0], self.completed - self.origin[1]
        return done / seconds if seconds > 0 and done > 0 else None

    def write(self, done: bool = False) -> None:
        self.last_line = self.reporter.clock()
        self.lines += 1
        parts = [self.description]
        if self.total:
            parts += [f"{min(self.completed / self.total, 1):.0%}", f"{_count(self.completed)}/{_count(self.total)}"]
        elif self.completed:
            parts.append(_count(self.completed))
        rate = self._rate()
        if rate is not None:
            parts.append(f"{rate:.1f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it")
        if done:
            parts.append(f"done in {_clock(self.last_line - self.started)}")
        elif rate is not None and self.total and self.completed < self.total:
            parts.append(f"ETA {_clock((self.total - self.completed) / rate)}")
        if self.info:
            parts.append(self.info)
        self.reporter.line(" ".join(parts))


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
