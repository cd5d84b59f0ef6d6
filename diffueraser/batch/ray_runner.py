"""Ray mode: the same batch on a Ray cluster, one long-lived actor per GPU (or CPU worker).

Each actor is a `work.Worker`: it loads the models on its first row and keeps them. The driver
(this process) hands a row to whichever actor is free, collects the outcome and writes the
report. Placement and restarts are declared: an actor asks for one GPU (`num_gpus=1`; Ray gives
it its own `CUDA_VISIBLE_DEVICES`), or for its share of the CPUs when the cluster has no GPU, and
Ray restarts a dead actor (`max_restarts`), on another node when its node is gone. A row whose
actor died is handed out again, at most `MAX_ATTEMPTS` times in all; an actor that Ray will not
restart (killed for good, restarts used up) is replaced by a new one, within a bounded budget.
Finished rows are never redone: their outputs and records are on disk, and the driver never
hands a row out again once an actor returned its outcome.

Every node reads the inputs and writes the outputs at the paths the driver sees, so INPUT and
OUTDIR must be on a filesystem all nodes mount at the same path (NFS, a cluster filesystem, or a
bucket mounted with a FUSE driver such as gcsfuse or s3fs). On one machine (`ray start --head`,
or no address at all) that always holds. Without a shared filesystem, copy the inputs to the same
path on every node first and collect each node's OUTDIR afterwards (the records make a second,
local run over the collected outputs skip what is there).

This module imports Ray; nothing else in the package does, so the single-video paths never need it.
"""
from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from ..errors import InputError
from .plan import Job, triage
from .report import FAILED, Outcome, Report, failure_message
from .work import Worker

MAX_ATTEMPTS = 3
"""A row is handed out at most this often when the actors running it die."""
MAX_RESTARTS = 2
"""Ray restarts a dead actor (process crash, lost node) this often; a replacement counts as one."""
MAX_PINGS = 20
"""Times a restarting actor is asked whether it is back before it is given up."""
PING_PAUSE = 0.5
"""Seconds between those questions."""

DispatchHook = Callable[[Job, Any], None]


def connect(address: Optional[str], quiet: bool = False) -> bool:
    """Join the cluster at `address` ('auto', 'ray://host:10001', 'host:6379'), or start a local
    one when `address` is empty. Returns whether this call started Ray (and so should stop it)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address or None, log_to_driver=not quiet, logging_level="warning" if quiet else "info")
    except (ConnectionError, ValueError, RuntimeError) as e:  # unreachable, malformed address, refused
        raise InputError(f"cannot reach the Ray cluster at {address!r}: {failure_message(e)}") from None
    return True


def worker_resources(workers: Optional[int]) -> tuple[int, dict[str, float]]:
    """How many actors to start and what each asks for: one per GPU (at most `workers`), else
    `workers` CPU workers (default 1) sharing the cluster's CPUs."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return (gpus if workers is None else max(1, min(workers, gpus))), {"num_gpus": 1, "num_cpus": 1}
    cpus = max(1, int(resources.get("CPU", 1)))
    count = max(1, min(workers or 1, cpus))
    return count, {"num_gpus": 0, "num_cpus": cpus // count}


def code_env() -> dict[str, Any]:
    """The actors' runtime environment: when this package runs from a source checkout (not
    installed), its folder goes on their PYTHONPATH so they can import it."""
    root = Path(__file__).resolve().parents[2]
    if root.name in ("site-packages", "dist-packages"):
        return {}
    paths = [str(root)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


def run_ray(jobs: list[Job], report: Report, address: Optional[str] = None, workers: Optional[int] = None,
            weights_dir: Optional[Union[str, Path]] = None, offline: bool = False, quiet: bool = False,
            on_dispatch: Optional[DispatchHook] = None) -> None:
    """Run every job on Ray actors, adding each outcome to `report` as it finishes.

    `on_dispatch(job, actor)` is called as each row is handed out (for logging and tests).
    """
    started = connect(address, quiet)
    try:
        _Driver(jobs, report, workers, weights_dir, offline, quiet, on_dispatch).run()
    finally:
        if started:
            ray.shutdown()


class _Driver:
    """Hands rows to free actors, retries rows of dead actors, revives or replaces actors."""

    def __init__(self, jobs: list[Job], report: Report, workers: Optional[int],
                 weights_dir: Optional[Union[str, Path]], offline: bool, quiet: bool,
                 on_dispatch: Optional[DispatchHook]) -> None:
        self.report, self.workers, self.quiet, self.on_dispatch = report, workers, quiet, on_dispatch
        self.worker_args = (None if weights_dir is None else str(Path(weights_dir).absolute()), offline)
        self.fresh: Iterator[tuple[Job, dict[str, Any]]] = self._runnable(jobs)
        # Rows handed out before fresh ones: the first row found, and rows whose actor died.
        self.queue: deque[tuple[Job, dict[str, Any]]] = deque()
        self.attempts: dict[int, int] = {}
        self.free: deque[Any] = deque()
        self.running: dict[Any, tuple[Any, Job, dict[str, Any]]] = {}
        self.reviving: dict[Any, Any] = {}
        self.pings: dict[Any, int] = {}
        self.actors: list[Any] = []
        self.replacements = 0
        self.bar: Any = None
        self.total = len(jobs)

    def run(self) -> None:
        from tqdm import tqdm

        with tqdm(total=self.total, desc="videos", unit="video", disable=self.quiet) as self.bar:
            first = next(self.fresh, None)
            if first is None:  # nothing to do: no actor is started
                return
            self.queue.append(first)
            self._start_actors()
            try:
                self._loop()
            finally:
                for actor in self.actors:
                    ray.kill(actor)

    def _start_actors(self) -> None:
        count, self.resources = worker_resources(self.workers)
        self.actor_class = ray.remote(Worker)
        self.budget = count * MAX_RESTARTS
        for _ in range(count):
            self._new_actor()

    def _new_actor(self) -> None:
        actor = self.actor_class.options(max_restarts=MAX_RESTARTS, max_task_retries=0, runtime_env=code_env(),
                                         **self.resources).remote(*self.worker_args)
        self.actors.append(actor)
        self.reviving[actor.ready.remote()] = actor  # free once it answers

    def _loop(self) -> None:
        while True:
            self._dispatch()
            waiting = list(self.running) + list(self.reviving)
            if not waiting:
                break
            [ref], _ = ray.wait(waiting, num_returns=1)
            if ref in self.reviving:
                self._revived(ref)
            else:
                self._finished(ref)
        for job, _ in list(self.queue) + list(self.fresh):
            self._add(Outcome(job.index, job.row.name, FAILED, str(job.row.output), str(job.row.video),
                              message="no Ray worker left to run this row (every worker died and could "
                                      "not be restarted)", attempts=self.attempts.get(job.index, 0)))
        self.queue.clear()

    def _dispatch(self) -> None:
        while self.free:
            item = self.queue.popleft() if self.queue else next(self.fresh, None)
            if item is None:
                return
            job, current = item
            actor = self.free.popleft()
            attempt = self.attempts[job.index] = self.attempts.get(job.index, 0) + 1
            self.running[actor.run.remote(job, current, None, attempt)] = (actor, job, current)
            if self.on_dispatch is not None:
                self.on_dispatch(job, actor)

    def _revived(self, ref: Any) -> None:
        actor = self.reviving.pop(ref)
        try:
            ray.get(ref)
        except ActorUnavailableError:  # still restarting: ask again
            self.pings[actor] = self.pings.get(actor, 0) + 1
            if self.pings[actor] < MAX_PINGS:
                time.sleep(PING_PAUSE)
                self.reviving[actor.ready.remote()] = actor
                return
            self._replace(actor)
        except RayActorError:  # gone for good (killed, restarts used up)
            self._replace(actor)
        else:
            self.pings.pop(actor, None)
            self.free.append(actor)

    def _replace(self, actor: Any) -> None:
        """Release a dead actor's resources and start a new one while the budget lasts."""
        ray.kill(actor, no_restart=True)
        self.actors.remove(actor)
        if self.replacements < self.budget:
            self.replacements += 1
            self._new_actor()

    def _finished(self, ref: Any) -> None:
        actor, job, current = self.running.pop(ref)
        try:
            outcome = ray.get(ref)
        except RayActorError as error:
            attempts = self.attempts[job.index]
            if attempts < MAX_ATTEMPTS:
                self.queue.appendleft((job, current))
            else:
                self._add(Outcome(job.index, job.row.name, FAILED, str(job.row.output), str(job.row.video),
                                  message=f"the Ray worker running this row died {attempts} times "
                                          f"(last: {failure_message(error)})", attempts=attempts))
            self.reviving[actor.ready.remote()] = actor  # back when Ray has restarted it
            return
        except Exception as error:  # noqa: BLE001 - e.g. the outcome could not be sent back
            outcome = Outcome(job.index, job.row.name, FAILED, str(job.row.output), str(job.row.video),
                              message=failure_message(error), attempts=self.attempts[job.index])
        self._add(outcome)
        self.free.append(actor)

    def _runnable(self, jobs: list[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Jobs with work to do, in order; the others (failed before starting, or done) are reported."""
        for job in jobs:
            outcome, current = triage(job)
            if outcome is None:
                yield job, current
            else:
                self._add(outcome)

    def _add(self, outcome: Outcome) -> None:
        self.report.add(outcome)
        if outcome.status == FAILED and not self.quiet:
            self.bar.write(f"failed: {outcome.name}: {outcome.message}")
        self.bar.update(1)
