"""Hugging Face Hub access that fails fast offline.

Without a network every hub lookup hangs 20–50 s before failing. Before the first hub
access we decide once: `HF_HUB_OFFLINE` set by the user is respected; otherwise a TCP
connect to the hub endpoint with a short timeout tells whether it is reachable, and if
not, offline mode is switched on so that cached files still load and missing ones fail
at once with one line saying how to supply them locally.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from urllib.parse import urlparse

from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing

PROBE_TIMEOUT_S = 3.0
_decided: bool | None = None


def _endpoint_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe():  # DNS itself can hang, so the whole probe runs under a deadline
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def set_offline(offline: bool = True) -> None:
    """Switch the hub libraries' offline flags at run time (they read the env var only at import)."""
    value = "1" if offline else "0"
    os.environ["HF_HUB_OFFLINE"] = value
    os.environ["HF_DATASETS_OFFLINE"] = value
    try:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = offline
    except ImportError:
        pass
    try:
        import datasets.config as ds_config

        ds_config.HF_HUB_OFFLINE = offline
        ds_config.HF_DATASETS_OFFLINE = offline
    except ImportError:
        pass


def is_offline() -> bool:
    """Decide (once per process) whether the hub is to be used; returns True when offline."""
    global _decided
    if _decided is None:
        env = os.environ.get("HF_HUB_OFFLINE")
        if env is not None:
            _decided = env.strip().lower() in ("1", "true", "yes", "on")
        else:
            _decided = not _endpoint_reachable()
        set_offline(_decided)
    return _decided


def missing_hint(what: str, hub_id: str, local_flag: str = "a local path") -> str:
    return (f"no network to the Hugging Face Hub and {hub_id!r} is not in the local cache; "
            f"download it where there is network (`hf download {hub_id}{' --repo-type dataset' if what == 'dataset' else ''}`) "
            f"and pass {local_flag} instead, or copy that machine's HF cache into $HF_HOME")


@contextmanager
def hub_resource(what: str, hub_id: str, local_flag: str = "a local path"):
    """Run a hub load; offline misses become one clear OfflineResourceMissing line."""
    offline = is_offline()
    try:
        yield offline
    except OfflineResourceMissing:
        raise
    except Exception as exc:  # the hub libraries raise OSError, ValueError, ConnectionError, … for a miss
        text = f"{type(exc).__name__}: {exc}"
        if "custom code" in text:  # transformers refuses (trust_remote_code=False) rather than asking on the terminal
            raise IfguideError(f"{what} {hub_id!r} needs its own Python code to load (custom code in the repository)",
                               hint="ifguide never runs code that comes with a model: use a model of an architecture "
                                    "transformers has built in", exit_code=2) from exc
        if offline or any(s in text for s in ("offline", "Offline", "couldn't connect", "Connection", "cache", "resolve")):
            raise OfflineResourceMissing(f"{what} {hub_id!r} is not available",
                                         hint=missing_hint(what, hub_id, local_flag)) from exc
        raise OfflineResourceMissing(f"could not load {what} {hub_id!r}: {str(exc).splitlines()[0][:200]}",
                                     hint=f"check the id, or pass {local_flag}") from exc
