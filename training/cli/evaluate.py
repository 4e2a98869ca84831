"""`googlenet-evaluate`: score artefacts on the same labelled images.

A shell over `keras_googlenet.evaluate.evaluate_models`; this module loads the dataset
(`keras_googlenet_training.data.load_dataset`, the specs of `googlenet-train --dataset`),
prints the table and writes `--json` and `--report`.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time

import numpy as np

from keras_googlenet_training.cli import (
    DefaultsFormatter,
    add_debug_flag,
    quiet_start,
    require_extras,
)

PROG = "googlenet-evaluate"
EXIT_OK, EXIT_USAGE = 0, 2
SPLITS = {"train": "train", "validation": "val", "test": "test"}  # --split: DatasetSplits
CONFUSION_PNG, RECALL_CSV, DISAGREEMENTS_CSV, IMAGES_DIR = (
    "confusion_matrix.png", "per_class_recall.csv", "disagreements.csv", "disagreements")
REPORT_NAMES = (CONFUSION_PNG, RECALL_CSV, DISAGREEMENTS_CSV, IMAGES_DIR)
PROGRESS_SECONDS = 5.0


def build_parser():
    from keras_googlenet.evaluate import LATENCY_RUNS

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Score each artefact (.keras, SavedModel, .tflite, .onnx, KerasHub preset) "
        "on the same labelled images, through googlenet-predict's preprocessing: format, "
        "size, top-1, top-5, the top-1 difference from the first model and batch-1 latency "
        "on this machine. Exit status: 0 ok, 1 an internal error, 2 bad arguments or inputs.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("--model", action="append", required=True, metavar="PATH",
                   help="an artefact; repeat for more (the first is the reference)")
    p.add_argument("--dataset", default="digits", help="digits | tfds:NAME | folder:PATH")
    p.add_argument("--split", default="validation", choices=list(SPLITS),
                   help="the split to score; validation is the training run's hold-out where "
                   "the dataset has no validation split of its own")
    p.add_argument("--data-dir", default=None, help="TFDS data directory")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="held-out share when the dataset has no validation split (as in "
                   "googlenet-train: keep its value and --seed to score the same images)")
    p.add_argument("--seed", type=int, default=0, help="seed of that hold-out")
    p.add_argument("--max-images", type=int, default=None, help="score the first N images")
    p.add_argument("--batch-size", type=int, default=32, help="images per inference call")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for TFLite / onnxruntime")
    p.add_argument("--latency-runs", type=int, default=LATENCY_RUNS,
                   help="timed batch-1 runs per model (median); 0 skips latency")
    p.add_argument("--json", metavar="FILE", default=None, help="write the figures as JSON")
    p.add_argument("--report", metavar="DIR", default=None,
                   help=f"write {CONFUSION_PNG} (first model), {RECALL_CSV} (every model), "
                   f"{DISAGREEMENTS_CSV} and {IMAGES_DIR}/ (the images the models classify "
                   "differently)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the report in a non-empty --report DIR (other files stay)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_debug_flag(p)
    return p


def main(argv=None):
    quiet_start()
    from keras_googlenet.errors import describe_os_error, is_refusal, refuse_or_report
    from keras_googlenet_training.launcher import interrupted_status, sigterm_as_interrupt

    args = build_parser().parse_args(argv)
    require_extras(PROG, "train", "export")  # the datasets and plots; the runtimes
    try:
        with sigterm_as_interrupt():  # SIGTERM removes a half-built report as Ctrl-C does
            _check_arguments(args)
            evaluation, splits = _evaluate(args)
            payload = _payload(args, evaluation, splits)
            if args.json:
                from keras_googlenet.publish import write_json_atomic

                write_json_atomic(payload, args.json)
            if args.report:
                _write_report(evaluation, splits.class_names, args.model, args.report)
    except KeyboardInterrupt as error:
        print(f"{PROG}: interrupted; nothing half-written was left", file=sys.stderr)
        return interrupted_status(error)
    except ImportError as error:
        if "keras-googlenet[" not in str(error):  # not our "install the extra" line
            return refuse_or_report(PROG, error, debug=args.debug)
        print(f"{PROG}: error: {error}", file=sys.stderr)  # a preset without keras-hub
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - sorted into refusals and internal errors
        if isinstance(error, OSError) and not is_refusal(error):
            print(f"{PROG}: error: {describe_os_error(error)}", file=sys.stderr)
            return EXIT_USAGE
        return refuse_or_report(PROG, error, debug=args.debug)
    print(format_table(payload))
    return EXIT_OK


def _check_arguments(args):
    """Refuse bad numbers, models and destinations before any data is loaded."""
    from keras_googlenet import paths

    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--threads", args.threads, 1),
                               ("--max-images", args.max_images, 1),
                               ("--latency-runs", args.latency_runs, 0)):
        if value is not None and value < least:
            raise ValueError(f"`{flag}` must be >= {least}; received {value}.")
    for model in args.model:
        if not os.path.exists(model):
            raise FileNotFoundError(f"`--model` {model!r}: not found.")
    if args.json:
        parent = os.path.dirname(os.path.abspath(args.json))
        if os.path.isdir(args.json) or not os.path.isdir(parent):
            raise ValueError(f"`--json` {args.json!r}: " + (
                "is a directory; name a file." if os.path.isdir(args.json) else
                f"its directory {parent} does not exist."))
        paths.writable_destination(parent, "json", "--json")
    if args.report:
        paths.refuse_symlink(args.report, "report")
        paths.writable_destination(args.report, "report", "--report")
        if os.path.isdir(args.report) and os.listdir(args.report) and not args.overwrite:
            raise ValueError(f"`--report` {args.report!r} is not empty: pass --overwrite to "
                             "replace the report in it (files it did not write are kept).")


def _evaluate(args):
    from keras_googlenet.evaluate import evaluate_models
    from keras_googlenet_training.data import load_dataset

    splits = load_dataset(args.dataset, data_dir=args.data_dir, seed=args.seed,
                          val_fraction=args.val_fraction)
    dataset = getattr(splits, SPLITS[args.split])
    count = {"train": splits.num_train, "validation": splits.num_val,
             "test": splits.num_test}[args.split]
    if dataset is None or not count:
        raise ValueError(f"`--split` {args.split}: {args.dataset} has no labelled "
                         f"{args.split} images (splits: train, validation"
                         f"{', test' if splits.test is not None else ''}).")
    total = min(count, args.max_images or count)
    evaluation = evaluate_models(
        args.model, _batches(dataset.take(total), args.batch_size),
        num_classes=splits.num_classes, batch_size=args.batch_size, num_threads=args.threads,
        latency_runs=args.latency_runs, progress=None if args.quiet else _progress(total))
    return evaluation, splits


def _batches(dataset, batch_size):
    """(list of uint8 images, labels) batches of an unbatched tf.data of (image, label):
    images of a folder dataset differ in size, so they are not stacked."""
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
        if len(images) == batch_size:
            yield images, np.array(labels)
            images, labels = [], []
    if images:
        yield images, np.array(labels)


def _progress(total):
    """A progress callback: a line on stderr every few seconds and at the end."""
    last = [0.0]

    def report(done):
        now = time.monotonic()
        if done == total or now - last[0] >= PROGRESS_SECONDS:
            last[0] = now
            print(f"[evaluate] {done}/{total} images", file=sys.stderr, flush=True)

    return report


def _machine():
    """The CPU this process runs on, as /proc/cpuinfo names it, and its core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), name)
    except OSError:  # not Linux
        pass
    return f"{name}, {os.cpu_count()} cores"


def _payload(args, evaluation, splits):
    return {
        "dataset": args.dataset, "split": args.split,
        "split_description": splits.val_split if args.split == "validation" else args.split,
        "images": int(len(evaluation.labels)), "classes": splits.class_names,
        "latency": {"batch": 1, "statistic": "median", "runs": args.latency_runs,
                    "threads": args.threads, "machine": _machine()},
        "models": [m.row() for m in evaluation.models],
        "disagreements": int(len(evaluation.disagreements())),
    }


def _size(size_bytes):
    if size_bytes < 1024:
        return f"{size_bytes} B"
    if size_bytes < 1024**2:
        return f"{size_bytes / 1024:.1f} KiB"
    return f"{size_bytes / 1024**2:.1f} MiB"


def format_table(payload):
    """The figures of a `--json` payload as the text table the CLI prints."""
    rows = [("model", "format", "size", "top-1", "top-5", "top-1 diff", "latency")]
    for i, m in enumerate(payload["models"]):
        rows.append((m["path"], m["format"], _size(m["size_bytes"]), f"{m['top1_pct']:.2f} %",
                     f"{m['top5_pct']:.2f} %",
                     "(reference)" if i == 0 else f"{m['top1_diff_pts']:+.2f} pts",
                     "-" if m["latency_ms"] is None else f"{m['latency_ms']:.2f} ms"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c < 2 else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    latency = payload["latency"]
    return "\n".join([
        f"{payload['dataset']} {payload['split']}: {payload['images']} images, "
        f"{len(payload['classes'])} classes; split: {payload['split_description']}",
        *lines,
        f"latency: batch {latency['batch']}, median of {latency['runs']} runs on "
        f"{latency['machine']}; {payload['disagreements']} images classified differently",
    ])


def _write_report(evaluation, class_names, models, directory):
    """Build the report beside `directory`, then swap it in whole: files of an older
    report are replaced, the user's other files stay."""
    from keras_googlenet.publish import discard_stage, replace_owned

    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(directory))}.tmp-",
                             dir=parent)
    try:
        _plot_confusion(evaluation, class_names, models[0], os.path.join(stage, CONFUSION_PNG))
        _write_recall(evaluation, class_names, models, os.path.join(stage, RECALL_CSV))
        _write_disagreements(evaluation, class_names, models, stage)
        replace_owned(stage, directory, owned=lambda name: name in REPORT_NAMES)
    finally:
        discard_stage(stage, REPORT_NAMES)


def _plot_confusion(evaluation, class_names, model, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_googlenet.evaluate import confusion_matrix

    first = evaluation.models[0]
    matrix = confusion_matrix(evaluation.labels, first.predictions, evaluation.num_classes)
    side = min(4 + 0.4 * len(class_names), 20)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    shown = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    if len(class_names) <= 30:  # beyond that, names and counts are unreadable
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names,
                      rotation=90 if max(len(name) for name in class_names) > 3 else 0)
        ax.set_yticks(ticks, class_names)
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                        color="white" if count > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{os.path.basename(model)}: top-1 {first.top1_pct:.2f} % "
                 f"({len(evaluation.labels)} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_recall(evaluation, class_names, models, path):
    from keras_googlenet.evaluate import per_class_recall

    recalls = [per_class_recall(evaluation.labels, m.predictions, evaluation.num_classes)
               for m in evaluation.models]
    counts = np.bincount(evaluation.labels, minlength=evaluation.num_classes)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "images", *models])
        for c, name in enumerate(class_names):
            writer.writerow([name, int(counts[c]),
                             *("" if r[c] is None else f"{r[c]:.4f}" for r in recalls)])


def _write_disagreements(evaluation, class_names, models, stage):
    """`disagreements.csv`: each image the models classify differently, its true class and
    each model's; its pixels as `disagreements/<index>.png` (the first ones kept)."""
    from PIL import Image

    os.makedirs(os.path.join(stage, IMAGES_DIR))
    with open(os.path.join(stage, DISAGREEMENTS_CSV), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "image", "true class", *models])
        for index in evaluation.disagreements():
            image = evaluation.kept_images.get(int(index))
            name = f"{IMAGES_DIR}/{index:06d}.png" if image is not None else ""
            if image is not None:
                Image.fromarray(np.asarray(image, dtype=np.uint8)).save(
                    os.path.join(stage, name))
            writer.writerow([int(index), name, class_names[evaluation.labels[index]],
                             *(class_names[m.predictions[index]] for m in evaluation.models)])


if __name__ == "__main__":
    sys.exit(main())
