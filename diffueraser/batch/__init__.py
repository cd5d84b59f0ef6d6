"""Batch runs: many videos in one command, resumable, on one machine or a Ray cluster.

The pieces, in the order a batch uses them:

| module | what it does |
|---|---|
| `rows.py` | finds the rows: a folder (naming rule) or a manifest (CSV / JSON Lines), with per-row settings |
| `plan.py` | checks the whole batch before any work (settings, output collisions) and decides what is done |
| `record.py` | the record beside each output (inputs' content hashes, settings) that makes reruns skip |
| `work.py` | one row: mask from prompts or text when asked, the engine, the output and its record |
| `report.py` | each row's outcome, written as JSON Lines |
| `local.py` | one process, models loaded once, progress over videos and stages |
| `ray_runner.py` | the same on a Ray cluster: one long-lived actor per GPU (or CPU worker) |
| `command.py` | `python -m diffueraser batch ...` |

Ray is imported by `ray_runner.py` only, which is imported only for `--ray`.
"""
