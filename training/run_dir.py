"""The run directory: atomic writes, finished-run protection, the curves plot."""

from __future__ import annotations

import contextlib
import csv
import errno
import fnmatch
import json
import os
import shutil

import numpy as np

from keras_googlenet import paths
from keras_googlenet.layers import portable_model
from keras_googlenet.publish import atomic_path as _atomic_publish
from keras_googlenet.publish import is_disk_full, replace_owned, staging_path

FINISHED_MARKER = "metrics.json"  # written last: its presence means the run finished
DIVERGED_MARKER = "diverged.json"  # the last attempt stopped on NaN/inf: may restart anew
# What a run directory holds while training; removed when a run is restarted anew.
TRAINING_STATE = ("backup", "history.csv", "best.weights.h5", "logs", DIVERGED_MARKER,
                  "config.json", "labels.txt")
# Everything a run directory holds that the project wrote: what an `--overwrite` replaces.
# Any other entry is the user's and moves into the replacement.
OWNED_NAMES = (*TRAINING_STATE, FINISHED_MARKER, "model.keras", "inference.keras",
               "qat.keras", "curves.png")
PHASE_COLUMN = "phase"  # history.csv: the phase ("float" or "qat") each epoch trained in
OWNED_PATTERNS = ("phase*.weights.h5", ".tmp-*", "googlenet-train-error-*.log")


def is_owned(name):
    """Whether the run-directory entry `name` is one the project writes."""
    return name in OWNED_NAMES or any(fnmatch.fnmatchcase(name, p) for p in OWNED_PATTERNS)


def is_finished(run_dir):
    return os.path.isfile(os.path.join(run_dir, FINISHED_MARKER))


def run_dir_of(output_dir, run_name):
    """`output_dir/run_name`: refused (naming `run_name`) unless it is a plain name inside
    `output_dir` and not a symbolic link."""
    return paths.child_path(output_dir, run_name, "run_name")


def training_dir(run_dir, overwrite=False):
    """Where a run is trained: `run_dir` itself, or, for `--overwrite` of a finished run,
    its stable staging sibling (`staging_path`), swapped in by `publish_replacement`
    once the new run has finished. The finished run stays untouched until then, and
    rerunning the same command resumes an interrupted replacement. Writes nothing."""
    staging = staging_path(run_dir)
    if overwrite and (is_finished(run_dir) or is_finished(staging)):
        return paths.refuse_symlink(staging, "run_name")
    return run_dir


def publish_replacement(staging, run_dir):
    """Swap the finished replacement `staging` in for `run_dir` in one rename; the old
    run's entries that the project did not write move into the new run first."""
    replace_owned(staging, run_dir, owned=is_owned)


class RunExistsError(ValueError):
    """The run directory holds a finished run and overwriting was not asked for."""


class DiskFullError(OSError):
    """No space left for a run-directory write; the previous file of that name is kept."""


def _disk_full(path, directory):
    return DiskFullError(errno.ENOSPC, f"no space left on {directory} while writing "
                         f"{os.path.basename(path)}", path)


def check_free_space(path, needed_bytes):
    """`DiskFullError` before a write that cannot fit: h5py's own ENOSPC path is fragile
    (measured: tracebacks, then a segfault)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)  # the write below would create it anyway
    if shutil.disk_usage(directory).free < needed_bytes:
        raise _disk_full(path, directory)


def _model_bytes(model):
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    total = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(total * 1.05) + (1 << 16)  # h5 and zip metadata


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside `path`; move it into place only if the block succeeds
    (the export's atomic publishing), a full disk raised as `DiskFullError`.

    `suffix` keeps extensions that writers insist on (Keras wants `.keras`, `.weights.h5`).
    """
    try:
        with _atomic_publish(path, suffix=suffix) as tmp:
            yield tmp
    except Exception as error:
        if is_disk_full(error):
            raise _disk_full(path, os.path.dirname(os.path.abspath(path))) from None
        raise


def write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_keras(model, path):
    """`model.save` with an atomic rename (a crash never leaves half a `.keras` file), as
    Keras' own layers (`portable_model`): the file loads without keras_googlenet."""
    check_free_space(path, _model_bytes(model))
    with atomic_path(path, suffix=".keras") as tmp:
        portable_model(model).save(tmp)


def save_weights(model, path):
    check_free_space(path, _model_bytes(model))
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


def changed_settings(path, record, ignore=()):
    """The keys of `record`, sorted, whose values differ from the JSON saved at `path`.

    The one resumable-settings check of training runs (`config.json`) and searches
    (`search.json`); each caller decides what a change means. Nothing saved there: [].
    A file cut short counts as holding nothing to resume against.
    """
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except ValueError:
        saved = {}

    def canonical(value):
        return json.dumps(value, default=str, sort_keys=True)

    return sorted(k for k in record
                  if k not in ignore and canonical(saved.get(k)) != canonical(record[k]))


def check_run_dir(run_dir, overwrite=False):
    """Refuse a finished run unless `overwrite`, and a `run_dir` that is a file; writes
    nothing, so it can run before the inputs are checked."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"`run_name`: {run_dir} is a file, not a run directory.")
    finished = os.path.exists(os.path.join(run_dir, FINISHED_MARKER))
    if finished and not overwrite:
        raise RunExistsError(
            f"{run_dir} already holds a finished run ({FINISHED_MARKER} exists). Pick another "
            "--run-name, or pass --overwrite to replace it."
        )
    return finished


def has_completed_epoch(run_dir):
    """Whether an unfinished run has anything to resume: a backup or a finished phase."""
    backup = os.path.join(run_dir, "backup")
    return any(files for _, _, files in os.walk(backup)) or any(
        name.startswith("phase") and name.endswith(".weights.h5")
        for name in (os.listdir(run_dir) if os.path.isdir(run_dir) else []))


def clear_training_state(run_dir):
    """Remove an unfinished run's state so that it starts over with new settings."""
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name in TRAINING_STATE or (name.startswith("phase") and name.endswith(".weights.h5")):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def prepare_run_dir(run_dir):
    """Create `run_dir`, which must not hold a finished run (`training_dir` chose a staging
    directory for an `--overwrite`): nothing is ever deleted here. Returns True when
    resuming (a backup is there).
    """
    if check_run_dir(run_dir, overwrite=True):
        raise RunExistsError(f"{run_dir} holds a finished run; it is only ever replaced "
                             "whole, once its replacement has finished.")
    backup = os.path.join(run_dir, "backup")
    resuming = os.path.isdir(backup) and any(files for _, _, files in os.walk(backup))
    os.makedirs(run_dir, exist_ok=True)
    return resuming


def _history_rows(path):
    """history.csv rows, one per epoch.

    An epoch redone after an interruption appears twice (CSVLogger appends); the last
    row of each epoch wins. A header repeated by an appending logger is skipped.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r.get("epoch") not in (None, "", "epoch")]
        columns = reader.fieldnames or []
    by_epoch = {int(float(r["epoch"])): r for r in rows}
    return columns, [by_epoch[e] for e in sorted(by_epoch)]


def read_history(path):
    """history.csv's numbers as {column: [floats]}, one value per epoch (the phase of each
    epoch: `read_phases`)."""
    columns, rows = _history_rows(path)
    return {c: [float(r[c]) for r in rows if r.get(c) not in (None, "")] for c in columns
            if c != PHASE_COLUMN}


def read_phases(path):
    """The phase ("float" or "qat") of each epoch in history.csv, in epoch order."""
    _, rows = _history_rows(path)
    return [r.get(PHASE_COLUMN) or "float" for r in rows]


def compact_history(path):
    """Rewrite history.csv with one row per epoch (atomically)."""
    columns, rows = _history_rows(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(history, path, title=""):
    """Loss and accuracy of the main and aux heads, train (solid) vs val (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(e) + 1 for e in history.get("epoch", [])] or None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"main": "C0", "aux1": "C1", "aux2": "C2"}
    for ax, kind in zip(axes, ("loss", "accuracy"), strict=True):
        for head, colour in colours.items():
            key = f"{head}_{kind}"
            if head == "main" and kind == "loss" and "main_loss" not in history:
                key = "loss"  # a model without aux heads logs its only loss as "loss"
            for prefix, style in (("", "-"), ("val_", "--")):
                values = history.get(prefix + key)
                if values:
                    xs = epochs[: len(values)] if epochs else range(1, len(values) + 1)
                    ax.plot(xs, values, style, color=colour, marker="o", markersize=3,
                            label=f"{head} {'val' if prefix else 'train'}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        ax.set_title(kind)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
