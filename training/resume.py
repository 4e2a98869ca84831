"""What a rerun of a run directory does: the settings it is compared by, whether an
unfinished run resumes or starts over, the diverged marker, and the epochs an
interruption keeps."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import keras
import tensorflow as tf

import keras_googlenet as kg
from keras_googlenet_training import callbacks as callbacks_lib
from keras_googlenet_training import run_dir as run_dir_lib

# Settings a rerun may change without starting the run over.
RESUME_IGNORES = {"overwrite", "versions", "command"}


def config_record(config, data, policy, replicas):
    """`config.json`: the settings, what they resolved to, and the software versions."""
    record = dataclasses.asdict(config)
    record.update({
        "resolved_precision": policy,
        "replicas_in_sync": replicas,
        "global_batch": data.global_batch,
        "steps_per_epoch_resolved": data.steps_per_epoch,
        "class_names": data.splits.class_names,
        "model": {
            "variant": config.variant, "input_size": config.input_size,
            "classes": len(data.splits.class_names), "widths": config.widths,
            "width_multiplier": config.width_multiplier, "include_aux": config.aux,
            "preprocessing": kg.VARIANTS[config.variant].preprocessing,
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "keras_googlenet": kg.__version__, "python": sys.version.split()[0]},
        "command": sys.argv,
    })
    return record


def starts_over(run_dir, record, overwrite=False):
    """True when the unfinished run in `run_dir` is to start over with new settings: it
    diverged, completed no epoch, or `overwrite` was asked. Raises if it must be resumed."""
    changed = run_dir_lib.changed_settings(os.path.join(run_dir, "config.json"), record,
                                           ignore=RESUME_IGNORES)
    if not changed:
        return False
    diverged = os.path.exists(os.path.join(run_dir, run_dir_lib.DIVERGED_MARKER))
    if diverged or overwrite or not run_dir_lib.has_completed_epoch(run_dir):
        return True
    raise ValueError(
        f"{run_dir} holds an unfinished run with different settings ({', '.join(changed)}); "
        "re-run with the same arguments to resume it, pass --overwrite to start it over, or "
        "choose another --run-name."
    )


def mark_diverged(config, run_dir, is_chief, policy, learning_rate, what):
    """Mark the run diverged (a rerun may then change its settings) and raise, advising
    only what applies."""
    if is_chief:
        run_dir_lib.write_json(os.path.join(run_dir, run_dir_lib.DIVERGED_MARKER),
                               {"cause": what, "learning_rate": learning_rate})
    advice = [f"a lower --learning-rate (now {learning_rate:g})"]
    if not config.warmup_epochs:
        advice.append("--warmup-epochs 1")
    if policy != "float32":
        advice.append("--precision float32")
    raise callbacks_lib.TrainingDivergedError(
        f"Training diverged: {what}. No backup, checkpoint or model holds the non-finite "
        f"weights. Re-run with {', '.join(advice[:-1]) + ' or ' if len(advice) > 1 else ''}"
        f"{advice[-1]} and the same --run-name: a diverged run starts over with new settings "
        "(the same command resumes from the last good epoch)."
    )


def epochs_backed_up(run_dir, config):
    """Epochs an interrupted run would resume after (its backups and finished phases)."""
    done = 0
    for index, (_, end_epoch) in enumerate(config.all_phases()):
        if os.path.exists(os.path.join(run_dir, f"phase{index}.weights.h5")):
            done = max(done, end_epoch)
        try:
            with open(os.path.join(run_dir, "backup", f"phase{index}", "latest.json"),
                      encoding="utf-8") as f:
                done = max(done, int(json.load(f)["epoch"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return done
