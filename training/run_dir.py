"""The run directory: atomic writes, finished-run protection, the curves plot."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile

FINISHED_MARKER = "metrics.json"  # written last: its presence means the run finished


class RunExistsError(ValueError):
    """The run directory holds a finished run and overwriting was not asked for."""


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    `suffix` keeps extensions that writers insist on (Keras wants `.keras`, `.weights.h5`).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    os.remove(tmp)  # writers such as h5py refuse some existing files
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_keras(model, path):
    """`model.save` with an atomic rename (a crash never leaves half a `.keras` file)."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def save_weights(model, path):
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


def prepare_run_dir(run_dir, overwrite=False):
    """Create `run_dir`; refuse a finished run unless `overwrite`. Returns True when resuming."""
    finished = os.path.exists(os.path.join(run_dir, FINISHED_MARKER))
    if finished and not overwrite:
        raise RunExistsError(
            f"{run_dir} already holds a finished run ({FINISHED_MARKER} exists). Pick another "
            "--run-name, or pass --overwrite to replace it."
        )
    if finished:
        for name in os.listdir(run_dir):
            path = os.path.join(run_dir, name)
            if os.path.isfile(path):
                os.remove(path)
            else:
                shutil.rmtree(path)
    backup = os.path.join(run_dir, "backup")
    resuming = not finished and os.path.isdir(backup) and any(
        files for _, _, files in os.walk(backup)
    )
    os.makedirs(run_dir, exist_ok=True)
    return resuming


def _history_rows(path):
    """history.csv rows, one per epoch.

    An epoch redone after an interruption appears twice (CSVLogger appends); the last
    row of each epoch wins. A header repeated by an appending logger is skipped.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r.get("epoch") not in (None, "", "epoch")]
        columns = reader.fieldnames or []
    by_epoch = {int(float(r["epoch"])): r for r in rows}
    return columns, [by_epoch[e] for e in sorted(by_epoch)]


def read_history(path):
    """history.csv as {column: [floats]}, one value per epoch."""
    columns, rows = _history_rows(path)
    return {c: [float(r[c]) for r in rows if r.get(c) not in (None, "")] for c in columns}


def compact_history(path):
    """Rewrite history.csv with one row per epoch (atomically)."""
    columns, rows = _history_rows(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
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
