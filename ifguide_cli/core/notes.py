"""Notes and warnings a stage has for its user, collected where they arise and shown by the CLI.

Core code calls `warn("…")` (something the user should act on or know: λ without a mask, a resumed
run, a random-weights model). The CLI prints each one on stderr for a terminal user and puts the whole
list under `warnings` in the `--json` object, so scripted users see exactly what a terminal user sees.
One command runs per process (or per in-process test invocation, which calls `reset()` first).
"""

from __future__ import annotations

_collected: list[str] = []
_listeners: list = []


def warn(message: str) -> None:
    """Record a note for the user (shown once, in order)."""
    if message not in _collected:
        _collected.append(message)
        for listener in _listeners:
            listener(message)


def collected() -> list[str]:
    """The notes of this invocation so far."""
    return list(_collected)


def reset(listener=None) -> None:
    """Start a new invocation; `listener(message)` is called for each note as it arrives (e.g. print it)."""
    _collected.clear()
    _listeners[:] = [listener] if listener is not None else []
