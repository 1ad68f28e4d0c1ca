"""Where RAD's reward model comes from: a download (https only, checksummed) or a local file, and its archive.

An archive is untrusted input: it is read member by member with limits on how many files it holds, how much
one member and all of them may expand to, and by what ratio (a zip bomb is refused before it fills the disk);
no member may land outside the extraction folder. A download is checked against a sha256 — the one given
(`--sha256`), or the one pinned here for RAD's release — and a cached download is checked again before reuse.
RAD's release has no pinned checksum in this version (it could not be computed where this was written), so it is
trusted on first use, as the reference's `gdown … && unzip` trusts it: downloaded over https only, its archive
checked as above, and its sha256 recorded in the artifact and printed, so a later install can pin it
(`--sha256`). Plain http is accepted only from this machine (127.0.0.1, localhost, ::1: a local mirror).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ifguide_cli.core import notes
from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing
from ifguide_cli.core.progress import NULL

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

RAD_URL = "https://storage.googleapis.com/rad_release/saved_models.zip"
RAD_SHA256: str | None = None  # unknown here: see the module docstring
MAX_MEMBERS = 1000  # RAD's release holds a few dozen files
MAX_MEMBER_BYTES = 8 << 30  # GPT-2 XL weights are ~6 GB
MAX_TOTAL_BYTES = 12 << 30
MAX_RATIO = 100  # weights barely compress; text files this small are not checked
MAX_DOWNLOAD_BYTES = 16 << 30
_RATIO_FROM = 1 << 20
_HINT = ("download {url} where there is network and run `ifguide rad download --from saved_models.zip` "
         "(or --from a pytorch_model.bin / reward-model folder)")


def valid_sha256(value: str | None) -> str | None:
    """`--sha256` as 64 lowercase hex digits (None when not given); anything else is one line."""
    if value is None:
        return None
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise IfguideError(f"--sha256 must be a sha256 digest (64 hexadecimal characters); got {value[:80]!r}", exit_code=2)
    return digest


def fetch_source(workspace: Workspace, source: str | None, url: str | None, sha256: str | None, reporter=NULL) -> tuple[Path, dict]:
    """(local file or folder to install from, where it came from); a URL is downloaded once into .downloads/."""
    if source is not None and url is not None:
        raise IfguideError("pass --url or --from, not both", exit_code=2)
    if source is not None:
        src = Path(source).expanduser()
        if not source.strip() or not src.exists():
            raise IfguideError(f"{source} does not exist", hint="pass RAD's saved_models.zip, a pytorch_model.bin, or a folder",
                               exit_code=2)
        return src, {"from": str(src.resolve())}
    url = RAD_URL if url is None else url
    _check_url(url)
    _check_online(url)
    expected = sha256 or (RAD_SHA256 if url == RAD_URL else None)
    downloads = workspace.root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    src = downloads / (Path(urlparse(url).path).name or "reward_model.bin")
    if src.is_file() and not _cached_ok(src, expected):
        src.unlink()  # changed since it was downloaded, or not the file expected: fetch it again
    if not src.is_file():
        _download(url, src, reporter)
        digest = sha256_of(src)
        _sidecar(src).write_text(digest)
        if expected is None:  # trust on first use: say what was trusted, so that it can be pinned
            notes.warn(f"{url} has no pinned checksum: trusted on first use, sha256 {digest} (recorded in the artifact; "
                       f"pin it next time with --sha256 {digest})")
    return src, {"url": url}


def checked_sha256(src: Path, expected: str | None) -> str | None:
    """The source file's sha256 (None for a folder); refused when it is not the one expected."""
    actual = sha256_of(src) if src.is_file() else None
    if expected and actual and actual != expected:
        raise IfguideError(f"checksum mismatch for {src.name}: sha256 {actual}, expected {expected}",
                           hint="the file is damaged or not the expected release; download it again", exit_code=1)
    return actual


def sha256_of(path: Path) -> str:
    from ifguide_cli.core.store.manifests import sha256_file

    return sha256_file(path)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_url(url: str) -> None:
    parsed = urlparse(url)
    local = parsed.scheme == "http" and parsed.hostname in LOOPBACK
    if (parsed.scheme != "https" and not local) or not parsed.hostname:
        raise IfguideError(f"--url {url[:120]!r} is not an https:// address",
                           hint="RAD's reward model is downloaded over https only (http only from this machine); for a "
                                "local file use --from FILE", exit_code=2)


def _check_online(url: str) -> None:
    import socket

    from ifguide_cli.core.hub import is_offline

    parsed = urlparse(url)
    host = parsed.hostname
    if host not in LOOPBACK and (is_offline() or os.environ.get("IFGUIDE_OFFLINE") == "1"):
        raise OfflineResourceMissing(f"no network to {host} to download the RAD reward model", hint=_HINT.format(url=url))
    try:
        with socket.create_connection((host, parsed.port or (443 if parsed.scheme == "https" else 80)), timeout=3):
            pass
    except OSError:
        raise OfflineResourceMissing(f"cannot reach {host} to download the RAD reward model", hint=_HINT.format(url=url)) from None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached_ok(src: Path, expected: str | None) -> bool:
    """A cached download is reused only when it still has the checksum expected (or recorded when downloaded)."""
    try:
        recorded = expected or _sidecar(src).read_text().strip()
    except OSError:
        return False
    return sha256_of(src) == recorded


def _download(url: str, target: Path, reporter=NULL) -> None:
    import urllib.request

    part = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(part, "wb") as fh:
            total = int(resp.headers.get("Content-Length") or 0) or None
            if total and total > MAX_DOWNLOAD_BYTES:
                raise IfguideError(f"{url} is {total >> 30} GiB, more than a reward model ({MAX_DOWNLOAD_BYTES >> 30} GiB)")
            with reporter.task("downloading reward model", total=total) as task:
                while block := resp.read(1 << 20):
                    fh.write(block)
                    task.advance(len(block))
                    if fh.tell() > MAX_DOWNLOAD_BYTES:
                        raise IfguideError(f"{url} sends more than {MAX_DOWNLOAD_BYTES >> 30} GiB; stopped")
        os.replace(part, target)
    except OSError as exc:
        raise OfflineResourceMissing(f"download of {url} failed ({exc})", hint=_HINT.format(url=url)) from None
    finally:
        part.unlink(missing_ok=True)


# ---- the archive ---------------------------------------------------------------------------------
def extract_from_zip(source: Path, workdir: Path) -> Path:
    """RAD's saved_models.zip: extract the toxicity model's weights (and the config/tokenizer files beside them)."""
    try:
        with zipfile.ZipFile(source) as zf:
            members = zf.infolist()
            if len(members) > MAX_MEMBERS:
                raise IfguideError(f"{source.name} holds {len(members)} files; a reward-model release holds at most "
                                   f"{MAX_MEMBERS}", hint="pass RAD's saved_models.zip or the weights file itself", exit_code=2)
            pick = _pick_weights(source, [m for m in members if m.filename.endswith((".bin", ".safetensors", ".pt"))])
            folder = PurePosixPath(pick.filename).parent
            beside = [m for m in members if PurePosixPath(m.filename).parent == folder and m is not pick
                      and m.filename.endswith((".json", ".txt", ".model"))]
            budget = [MAX_TOTAL_BYTES]
            for member in (pick, *beside):
                _extract_member(zf, member, workdir, source, budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise IfguideError(f"{source.name} is not a readable zip archive ({exc})",
                           hint="download it again, or pass the weights file itself", exit_code=2) from None
    return workdir / pick.filename


def _pick_weights(source: Path, weights: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    pick = next((m for m in weights if "gpt2_toxicity" in m.filename), None) or \
        next((m for m in weights if "toxic" in m.filename), None) or (weights[0] if len(weights) == 1 else None)
    if pick is None:
        raise IfguideError(f"{source.name} holds no toxicity reward model ({len(weights)} weight files)",
                           hint="expected saved_models/gpt2_toxicity/pytorch_model.bin inside", exit_code=2)
    return pick


def _extract_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, workdir: Path, source: Path, budget: list[int]) -> None:
    """One member, streamed with its size capped (the size a zip declares is not trusted) and its path confined."""
    parts = PurePosixPath(member.filename.replace("\\", "/")).parts
    if not parts or member.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise IfguideError(f"{source.name}: member {member.filename[:120]!r} points outside the archive's folder",
                           hint="this archive is not RAD's release", exit_code=2)
    limit = min(MAX_MEMBER_BYTES, budget[0])
    if member.file_size > limit:
        raise IfguideError(f"{source.name}: {member.filename} expands to {member.file_size >> 20} MiB, more than "
                           f"{limit >> 20} MiB", hint="this archive is not RAD's release", exit_code=2)
    if member.file_size > _RATIO_FROM and member.file_size > MAX_RATIO * max(member.compress_size, 1):
        raise IfguideError(f"{source.name}: {member.filename} expands {member.file_size // max(member.compress_size, 1)}× "
                           "(a zip bomb?)", hint="this archive is not RAD's release", exit_code=2)
    target = workdir.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(member) as src, open(target, "wb") as out:
        while block := src.read(1 << 20):
            written += len(block)
            if written > member.file_size:
                raise IfguideError(f"{source.name}: {member.filename} holds more than the size it declares", exit_code=2)
            out.write(block)
    budget[0] -= written

