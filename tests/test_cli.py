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


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


PRIOR_ONLY_ARGS = ["--no-diffusion", "--prior", "propagation", "-q"]


@pytest.mark.parametrize(
    "outputs, words",
    [
        (["-o", "{mask}"], "the output {mask} is the mask {mask} (the same file); choose another output path"),
        (["-o", "{dir}/o.mp4", "--prior-output", "{clip}"],
         "the prior output {clip} is the input video {clip} (the same file)"),
        (["-o", "{dir}/hard.mp4"], "is the input video {clip} (a hard link to the same file)"),
        (["-o", "{dir}/soft.mp4"], "is the input video {clip} (the same file through a symbolic link)"),
        (["-o", "{dir}/o.mp4", "--prior-output", "{dir}/o.mp4"], "are the same file; give each its own path"),
        (["-o", "{dir}"], "is an existing folder"),
        (["-o", "{dir}/nowhere/o.mp4"], "does not exist; create it first"),
        (["-o", "{dir}/file.txt/o.mp4"], "file.txt is a file, not a folder"),
        (["-o", "{dir}/o.mov"], "must end in .mp4"),
        (["-o", "{dir}/o.mp4", "--prior-output", "{dir}/p.mp4", "--prior", "none", "--diffusion"],
         "was given but --prior none makes no prior video"),
    ],
    ids=["o-is-mask", "prior-output-is-video", "hard-link", "symlink", "o-is-prior-output", "folder",
         "missing-folder", "under-a-file", "not-mp4", "prior-output-without-prior"],
)
def test_outputs_that_would_overwrite_or_cannot_be_written_exit_2_and_keep_the_inputs(
        clip, mask_png, tmp_path, capsys, outputs, words):
    import os

    os.link(clip, tmp_path / "hard.mp4")
    os.symlink(clip, tmp_path / "soft.mp4")
    (tmp_path / "file.txt").write_text("a file")
    before = _digest(clip), _digest(mask_png)
    fill = dict(clip=clip, mask=mask_png, dir=tmp_path)
    args = [str(clip), str(mask_png), *[a.format(**fill) for a in outputs]]
    code = main(args + PRIOR_ONLY_ARGS if "--prior" not in outputs else args + ["-q"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert err.startswith("error: ") and "\n" not in err and words.format(**fill) in err, err
    assert (_digest(clip), _digest(mask_png)) == before
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "p.mp4").exists()


def test_a_trimmed_video_is_reported_with_how_much_was_processed(tmp_path, capsys):
    long_clip = make_clip(tmp_path / "long.mp4", frames=20, width=96)
    video = read_video(long_clip)
    mask = np.zeros((video.height, video.width), np.uint8)
    mask[10:30, 20:50] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    out = tmp_path / "out.mp4"
    code = main([str(long_clip), str(tmp_path / "m.png"), "-o", str(out), "--max-seconds", "0.2", *PRIOR_ONLY_ARGS])
    err = capsys.readouterr().err.strip()
    assert code == 0
    processed, whole = int(0.2 * video.fps) / video.fps, video.num_frames / video.fps
    assert err == (f"note: processed the first {processed:.1f} s of {whole:.1f} s "
                   f"(--max-seconds 0.2; --max-seconds none processes the whole video)")
    assert read_video(out).num_frames == int(0.2 * video.fps)

    code = main([str(long_clip), str(tmp_path / "m.png"), "-o", str(out), "--max-seconds", "none", *PRIOR_ONLY_ARGS])
    assert code == 0 and capsys.readouterr().err == ""


def test_out_of_memory_exits_4_with_advice(clip, mask_png, tmp_path, capsys, monkeypatch):
    import torch

    from diffueraser.engine import Eraser
    from diffueraser.errors import DeviceError

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    monkeypatch.setattr(Eraser, "erase_file", no_memory)
    code = main([str(clip), str(mask_png), "-o", str(tmp_path / "o.mp4"), *PRIOR_ONLY_ARGS])
    err = capsys.readouterr().err.strip()
    assert code == DeviceError.exit_code == 4
    assert err == ("error: out of memory while erasing (CUDA out of memory. Tried to allocate 2.00 GiB); "
                   "lower --max-size or --max-seconds, or use another --device")
