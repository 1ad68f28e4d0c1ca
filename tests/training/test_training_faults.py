"""Training inputs and outputs that go wrong: a damaged resumable state suggests --restart, a step count too large
for torch is refused, an unwritable log file is named and nothing after it is written."""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

import pytest

from ifguide_cli.core.errors import IfguideError, from_environment


def test_a_damaged_resumable_training_state_suggests_restart(tmp_path):
    from ifguide_cli.core.training.checkpoint import check_resumable

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    with zipfile.ZipFile(checkpoint / "optimizer.pt", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", b"x" * 1000)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 2}')
    check_resumable(checkpoint)  # whole: nothing to say
    os.truncate(checkpoint / "optimizer.pt", 300)
    with pytest.raises(IfguideError, match=r"optimizer\.pt: it is cut short") as err:
        check_resumable(checkpoint)
    assert "--restart" in err.value.one_line()


def test_a_whole_number_too_large_for_torch_is_refused_not_trained_forever():
    from ifguide_cli.core.training.config import TrainConfig

    with pytest.raises(IfguideError, match="--max-steps must be at most"):
        TrainConfig(max_steps=10**19)
    assert TrainConfig(max_steps=2**62).max_steps == 2**62


def test_an_unwritable_log_file_is_named_and_the_logs_after_it_are_not_written(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ifguide_cli.core.progress import NULL
    from ifguide_cli.core.training import trainer

    class Full:
        def __init__(self, path, mode):
            self.path = Path(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            if self.path.name == "full":
                raise OSError(errno.ENOSPC, "No space left on device")
            self.path.write_text(text)

    monkeypatch.setattr(trainer, "open", Full, raising=False)
    callback = trainer.ReportCallback(NULL, [tmp_path / "full", tmp_path / "staging.log"], 64)
    state = SimpleNamespace(is_world_process_zero=True, global_step=1, epoch=0.1)
    with pytest.raises(OSError) as err:
        callback.on_log(None, state, None, logs={"loss": 1.0})
    assert str(tmp_path / "full") in from_environment(err.value).one_line()
    assert not (tmp_path / "staging.log").exists()
