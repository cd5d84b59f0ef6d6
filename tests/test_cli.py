"""`python -m diffueraser`: options, exit codes and messages, a real run."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import cv2
import numpy as np
import pytest

from diffueraser.__main__ import EXIT_BAD_INPUT, EXIT_MISSING_CHECKPOINT, main
from diffueraser.media import read_video
from diffueraser.settings import Settings
from footage import has_audio, make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("cli") / "in.mp4", frames=8, width=160)


@pytest.fixture(scope="module")
def mask_png(clip, tmp_path_factory):
    video = read_video(clip)
    mask = np.zeros((video.height, video.width), np.uint8)
    mask[20:40, 60:90] = 255
    path = tmp_path_factory.mktemp("cli_mask") / "mask.png"
    cv2.imwrite(str(path), mask)
    return path


def test_help_documents_every_setting():
    out = subprocess.run([sys.executable, "-m", "diffueraser", "--help"], capture_output=True, text=True, check=True).stdout
    for f in fields(Settings):
        assert "--" + f.name.replace("_", "-") in out
    assert "--output" in out and "--weights" in out and "--offline" in out


def test_prior_only_run_writes_the_video_with_its_audio(clip, mask_png, tmp_path):
    out = tmp_path / "out.mp4"
    code = main([str(clip), str(mask_png), "-o", str(out), "--no-diffusion", "--prior", "propagation", "-q",
                 "--prior-output", str(tmp_path / "prior.mp4")])
    assert code == 0
    assert read_video(out).frames.shape == read_video(clip).frames.shape
    assert has_audio(out) and (tmp_path / "prior.mp4").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["missing.mp4", "{mask}"], "missing.mp4"),
        (["{mask}", "{mask}"], "not a video"),
        (["{clip}", "{clip}", "--steps", "3"], "steps must be one of 2, 4, 8, 16"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_reason(clip, mask_png, tmp_path, capsys, args, words):
    args = [a.format(clip=clip, mask=mask_png) for a in args]
    code = main([*args, "-o", str(tmp_path / "o.mp4"), "--no-diffusion", "--prior", "propagation", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert err.startswith("error: ") and "\n" not in err and words in err
    assert not (tmp_path / "o.mp4").exists()


def test_missing_checkpoints_exit_3_naming_each_part(clip, mask_png, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("DIFFUERASER_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    code = main([str(clip), str(mask_png), "-o", str(tmp_path / "o.mp4"), "--offline", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_MISSING_CHECKPOINT
    for name in ("lixiaowen/diffuEraser", "sd-vae-ft-mse", "PCM_Weights", "raft-things.pth", "DIFFUERASER_WEIGHTS"):
        assert name in err
