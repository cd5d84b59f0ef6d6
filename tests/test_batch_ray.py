"""`python -m diffueraser batch --ray`: on a local Ray instance (2 CPUs), the same outputs as local
mode, and a batch that survives an actor killed in the middle. One Ray instance for the module."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from diffueraser.batch.command import main  # noqa: E402
from diffueraser.batch.plan import plan  # noqa: E402
from diffueraser.batch.ray_runner import run_ray  # noqa: E402
from diffueraser.batch.record import record_path  # noqa: E402
from diffueraser.batch.report import Report  # noqa: E402
from diffueraser.batch.rows import find_rows  # noqa: E402
from diffueraser.media import read_video  # noqa: E402
from diffueraser.settings import Settings  # noqa: E402
from test_batch import NAMES, PRIOR_ONLY, make_batch_folder, read_report  # noqa: E402

SETTINGS = Settings(diffusion=False, prior="propagation", seed=3)
"""What PRIOR_ONLY's options make."""


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    return make_batch_folder(tmp_path_factory.mktemp("ray_batch") / "clips")


@pytest.fixture(scope="module")
def local_out(made, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray_local") / "out"
    assert main([str(made), "-o", str(out), *PRIOR_ONLY]) == 0
    return out


def assert_same_outputs(a: Path, b: Path) -> None:
    for name in NAMES:
        np.testing.assert_array_equal(read_video(a / f"{name}.mp4").frames, read_video(b / f"{name}.mp4").frames)


def test_ray_mode_writes_the_outputs_of_local_mode_and_reruns_skip(cluster, made, local_out, tmp_path):
    out = tmp_path / "out"
    assert main([str(made), "-o", str(out), "--ray", "--workers", "2", *PRIOR_ONLY]) == 0
    report = read_report(out / "report.jsonl")
    assert {r["status"] for r in report.values()} == {"done"} and len(report) == len(NAMES)
    assert all(r["worker"] for r in report.values())
    assert_same_outputs(local_out, out)
    for name in NAMES:  # the records say the same as local mode's
        ours, theirs = (json.loads(record_path(d / f"{name}.mp4").read_text()) for d in (out, local_out))
        assert ours["inputs"] == theirs["inputs"] and ours["settings"] == theirs["settings"]
    assert main([str(made), "-o", str(out), "--ray", *PRIOR_ONLY]) == 0
    assert {r["status"] for r in read_report(out / "report.jsonl").values()} == {"skipped"}


def test_actors_killed_mid_batch_have_their_rows_retried_and_every_output_is_valid(cluster, made, local_out, tmp_path):
    out = tmp_path / "out"
    killed = []

    def kill_actors(job, actor):
        # At a row's first start, while it is in flight: row 1's actor for good (a replacement is
        # started), row 2's so that Ray restarts it (max_restarts).
        if job.index in (1, 2) and job.index not in killed:
            killed.append(job.index)
            ray.kill(actor, no_restart=job.index == 1)

    jobs = plan(find_rows(made, out), SETTINGS)
    with Report(out / "report.jsonl") as report:
        run_ray(jobs, report, workers=2, quiet=True, on_dispatch=kill_actors)
    assert killed == [1, 2]
    assert sorted(o.index for o in report.outcomes) == [0, 1, 2]  # each row once: finished rows never redone
    assert {o.status for o in report.outcomes} == {"done"}
    assert {o.index: o.attempts for o in report.outcomes} == {0: 1, 1: 2, 2: 2}
    assert_same_outputs(local_out, out)
    assert not list(out.glob(".*.partial"))
