"""The tuning audit trail: one JSON-lines file per tuner process, one line per trial it ran.

KerasTuner's own state says how each trial ended; this says which process ran it, when
and for how long, so a distributed search can be checked to have run every trial once.
"""

from __future__ import annotations

import json
import os
import time

EXECUTIONS_DIR = "executions"  # under the project directory: <tuner_id>.jsonl


def record_execution(project_dir, tuner_id, trial_id, status, started, *, score_name,
                     score=None, cost=None, error=None):
    """Append what this process ran to `executions/<tuner_id>.jsonl`.

    `started` is the trial's `time.perf_counter()` start; `cost` a `CandidateCost`.
    """
    record = {
        "trial_id": trial_id, "tuner_id": tuner_id, "pid": os.getpid(),
        "status": status, "seconds": round(time.perf_counter() - started, 3),
        "finished_at": time.time(), score_name: score,
    }
    if cost is not None:
        record.update(cost.as_metrics())
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"[:500]
    directory = os.path.join(project_dir, EXECUTIONS_DIR)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{tuner_id}.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_executions(path):
    """The records of `executions/<tuner_id>.jsonl` (or of every file in a directory)."""
    if os.path.isdir(path):
        return [r for name in sorted(os.listdir(path)) if name.endswith(".jsonl")
                for r in read_executions(os.path.join(path, name))]
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def executions_of(project_dir, tuner_id):
    """What the tuner process `tuner_id` has run in this project so far."""
    return read_executions(os.path.join(project_dir, EXECUTIONS_DIR, f"{tuner_id}.jsonl"))
