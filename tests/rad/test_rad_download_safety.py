"""`rad download` fetches only over https, pins and rechecks the release's checksum, and extracts archives with
limits (size, file count, paths that escape)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store.workspace import Workspace


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://h/x.zip", "javascript:alert(1)", "http://h/x.zip", "", "x.zip"])
def test_rad_url_must_be_https(tmp_path, url):
    from ifguide_cli.core.rad.source import fetch_source

    with pytest.raises(IfguideError, match="https") as err:
        fetch_source(Workspace(tmp_path), None, url, None)
    assert err.value.exit_code == 2


def test_rad_default_release_is_trusted_on_first_use_and_a_cached_download_is_checked_again(tmp_path, monkeypatch):
    import hashlib

    from ifguide_cli.core import notes
    from ifguide_cli.core.rad import source as rad_source
    ws = Workspace(tmp_path)
    monkeypatch.setattr(rad_source, "_check_online", lambda url: None)
    with pytest.raises(IfguideError, match="64 hexadecimal"):
        rad_source.valid_sha256("zz")
    downloads = []

    def download(url, target, reporter=None):
        downloads.append(url)
        target.write_bytes(b"release")

    monkeypatch.setattr(rad_source, "_download", download)
    rad_source.fetch_source(ws, None, None, None)  # RAD's release, no pinned checksum: trusted, its digest printed
    digest = hashlib.sha256(b"release").hexdigest()
    assert downloads == [rad_source.RAD_URL] and any(f"--sha256 {digest}" in n for n in notes.collected())
    url = "https://example.org/saved_models.zip"
    src, _ = rad_source.fetch_source(ws, None, url, None)
    rad_source.fetch_source(ws, None, url, None)
    assert len(downloads) == 1  # reused: its checksum is the one recorded
    src.write_bytes(b"tampered")
    rad_source.fetch_source(ws, None, url, None)
    assert len(downloads) == 2 and src.read_bytes() == b"release"


def _zip(path: Path, members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_rad_archives_are_extracted_with_limits(tmp_path):
    from ifguide_cli.core.rad.source import extract_from_zip

    work = tmp_path / "work"
    work.mkdir()
    weights = "saved_models/gpt2_toxicity/pytorch_model.bin"
    bomb = _zip(tmp_path / "bomb.zip", {weights: bytes(50 << 20)})
    with pytest.raises(IfguideError, match="zip bomb"):
        extract_from_zip(bomb, work)
    many = _zip(tmp_path / "many.zip", {**{f"junk/{i}": b"" for i in range(1001)}, weights: b"x"}, zipfile.ZIP_STORED)
    with pytest.raises(IfguideError, match=r"many\.zip holds 1002 files"):
        extract_from_zip(many, work)
    slip = _zip(tmp_path / "slip.zip", {"../../escaped": b"x", weights: b"x"})
    assert extract_from_zip(slip, work) == work / weights  # only the weights and the files beside them are read
    slip = _zip(tmp_path / "slip2.zip", {"saved_models/gpt2_toxicity/../../../../x.bin": b"x"})
    with pytest.raises(IfguideError, match="outside"):
        extract_from_zip(slip, work)
    (tmp_path / "t.zip").write_bytes(bomb.read_bytes()[:1000])
    with pytest.raises(IfguideError, match=r"t\.zip is not a readable zip"):
        extract_from_zip(tmp_path / "t.zip", work)
    assert not (tmp_path / "escaped").exists()


def test_rad_download_from_a_local_http_server_records_and_pins_the_sha256(cli, tmp_path):
    """The whole download path over a socket (plain http is accepted from this machine only): the archive's sha256
    is recorded in the artifact and printed; --sha256 pins it, and a wrong one is refused."""
    import functools
    import hashlib
    import http.server
    import threading

    from evalkit import save_rad_release, tiny_reward_model

    archive = save_rad_release(tiny_reward_model(), tmp_path / "src")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
        tok = str(tmp_path / "src" / "gpt2-tokenizer")
        got = cli("--json", "rad", "download", "--url", url, "--tokenizer", tok)
        assert got.exit_code == 0, got.stderr
        assert got.json["summary"]["source_sha256"] == digest
        assert any(f"--sha256 {digest}" in w for w in got.json["warnings"])  # printed too (stderr without --json)
        pinned = cli("--json", "rad", "download", "--url", url, "--tokenizer", tok, "--sha256", digest)
        assert pinned.exit_code == 0 and pinned.json["reused"] is True
        wrong = cli("rad", "download", "--url", url, "--tokenizer", tok, "--sha256", "0" * 64, "--force")
        assert wrong.exit_code != 0 and "checksum mismatch" in wrong.stderr
    finally:
        server.shutdown()
