"""Inference latency of GoogLeNet across runtimes: Keras, SavedModel, TFLite, ONNX Runtime.

    python benchmarks/inference_latency.py --out-dir /tmp/bench --markdown /tmp/bench/table.md

Builds a GoogLeNet (default: the torchvision topology at 224x224, 1000 classes, random
weights; or `--source MODEL.keras`), exports it with `keras_googlenet.export` (SavedModel,
TFLite fp32/fp16/int8, ONNX; int8 calibrated on random images, which is enough for
timing), then times every artefact in one fresh subprocess per thread count (TensorFlow's
thread pools are process-wide and fixed at start-up), interleaving the artefacts in rounds
so that background load affects them alike:

- batch-1 latency: median (and p90) of `--runs` calls after `--warmup` calls, with 1 and 2
  threads;
- batch-32 throughput with the most threads: images/s from the median of `--batch-runs`
  calls.

`--reference-onnx PATH` adds a row for a plain NCHW ONNX model timed in the same rounds,
e.g. torchvision's own GoogLeNet (`benchmarks/investigations/torchvision_onnx.py export PATH`).

Each TFLite artefact also gets a MediaPipe Tasks `ImageClassifier` row (`--no-mediapipe`
to leave them out), timed in the same rounds: one call classifies a decoded 256x256 RGB
frame, so it includes MediaPipe's own resize and normalization (read from the TFLite
metadata) and its top-k; batch 1 only. MediaPipe's Python API has no thread setting:
its rows run with MediaPipe's default in every thread column.

Prints a markdown table (and writes it with `--markdown`). Not a test: numbers depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from _timing import call_times_ms

ROWS = (  # (row label, export format or "keras")
    ("Keras (tf.function)", "keras"),
    ("SavedModel", "savedmodel"),
    ("TFLite fp32", "tflite-fp32"),
    ("TFLite fp16", "tflite-fp16"),
    ("TFLite dynamic-range", "tflite-dynamic"),
    ("TFLite int8", "tflite-int8"),
    ("ONNX Runtime", "onnx"),
)


OPTIMIZED_FORMATS = ("tflite-fp32", "tflite-int8", "onnx")
OPTIMIZED_LABELS = {"tflite-fp32": "TFLite fp32, optimize=True",
                "tflite-int8": "TFLite int8, optimize=True",
                "onnx": "ONNX Runtime, optimize=True"}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=None, help="a .keras model (default: build one)")
    p.add_argument("--variant", default="torchvision")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--out-dir", default="/tmp/googlenet-bench")
    p.add_argument("--formats", default=",".join(fmt for _, fmt in ROWS),
                   help="rows to measure (keras plus export formats)")
    p.add_argument("--threads", default="1,2", help="thread counts for batch 1")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batch-runs", type=int, default=5)
    p.add_argument("--reuse", action="store_true", help="reuse artefacts in --out-dir")
    p.add_argument("--compare-optimized", action="store_true",
                   help="also time tflite-fp32, tflite-int8 and onnx exported with "
                   "optimize=True (BatchNorm folded, sibling 1x1 convs merged by us)")
    p.add_argument("--reference-onnx", default=None, metavar="PATH",
                   help="also time this NCHW .onnx (e.g. torchvision's own GoogLeNet, from "
                   "`benchmarks/investigations/torchvision_onnx.py export`) in ONNX Runtime, "
                   "same rounds")
    p.add_argument("--mediapipe", action=argparse.BooleanOptionalAction, default=True,
                   help="a MediaPipe ImageClassifier row per TFLite artefact")
    p.add_argument("--markdown", default=None, help="write the table to this file")
    p.add_argument("--worker", nargs=2, action="append", metavar=("FORMAT", "PATH"),
                   help=argparse.SUPPRESS)
    p.add_argument("--worker-threads", type=int, default=None, help=argparse.SUPPRESS)
    return p


REFERENCE = "reference-onnx"
MEDIAPIPE = ":mediapipe"  # suffix of a TFLite format: that file in MediaPipe


class _MediaPipeClassifier:
    """MediaPipe Tasks' ImageClassifier on one decoded frame (preprocessing included)."""

    batched = False

    def __init__(self, path):
        import mediapipe as mp
        from mediapipe.tasks import python as mp_tasks
        from mediapipe.tasks.python import vision

        options = vision.ImageClassifierOptions(
            base_options=mp_tasks.BaseOptions(model_asset_path=path), max_results=5)
        self.classifier = vision.ImageClassifier.create_from_options(options)
        frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        self.image = mp.Image(image_format=mp.ImageFormat.SRGB, data=frame)

    def _run(self, x):  # the frame stands in for `x`: MediaPipe takes decoded images
        return self.classifier.classify(self.image)


class _ReferenceOnnx:
    """A plain NCHW ONNX model (no model card) in ONNX Runtime, fed the same NHWC batches."""

    def __init__(self, path, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        self.input_size = tuple(self.session.get_inputs()[0].shape[2:4])

    def _run(self, x):
        # The transpose costs what the input Transpose inside our NHWC export costs.
        return self.session.run(None, {self.name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})


def worker(rows, threads, args):
    """Runs in a subprocess (TF thread pools are fixed at start-up): time every artefact.

    The artefacts are interleaved in rounds (a few calls each per round), so that load
    from other processes hits them all alike. Prints one JSON line.
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from keras_googlenet.runtime import load_predictor

    predictors = {}
    for fmt, path in rows:
        if fmt == REFERENCE:
            predictors[fmt] = _ReferenceOnnx(path, threads)
            continue
        if fmt.endswith(MEDIAPIPE):
            predictors[fmt] = _MediaPipeClassifier(path)
            continue
        tf_based = fmt in ("keras", "savedmodel")
        predictors[fmt] = load_predictor(path, num_threads=None if tf_based else threads)
    h, w = next(p for p in predictors.values() if hasattr(p, "input_size")).input_size
    rng = np.random.default_rng(0)
    x1 = rng.uniform(-1, 1, (1, h, w, 3)).astype("float32")
    xb = rng.uniform(-1, 1, (args.batch, h, w, 3)).astype("float32") if args.batch else None
    # The raw call (int8 models include quantizing the input), without predict()'s checks.
    for predictor in predictors.values():
        for _ in range(args.warmup):
            predictor._run(x1)
    per_round = 5
    b1 = {fmt: [] for fmt in predictors}
    for _ in range(-(-args.runs // per_round)):
        for fmt, predictor in predictors.items():
            b1[fmt].extend(call_times_ms(lambda p=predictor: p._run(x1), per_round))
    result = {}
    for fmt, times in b1.items():
        result[fmt] = {"median_ms": float(np.median(times)),
                       "p90_ms": float(np.percentile(times, 90)), "runs": len(times)}
    if xb is not None:
        batched = {fmt: p for fmt, p in predictors.items() if getattr(p, "batched", True)}
        for predictor in batched.values():
            predictor._run(xb)  # warm-up at the batch size (TFLite resizes its input)
        tb = {fmt: [] for fmt in batched}
        for _ in range(args.batch_runs):
            for fmt, predictor in batched.items():
                tb[fmt].extend(call_times_ms(lambda p=predictor: p._run(xb), 1))
        for fmt, times in tb.items():
            result[fmt]["batch_ms"] = float(np.median(times))
            result[fmt]["images_per_s"] = args.batch / (float(np.median(times)) / 1e3)
    print("RESULT " + json.dumps(result))


def export_artefacts(args, formats):
    import keras

    from keras_googlenet import GoogLeNet
    from keras_googlenet.export import FORMATS, export_model

    os.makedirs(args.out_dir, exist_ok=True)
    source = args.source
    if source is None:
        source = os.path.join(args.out_dir, "googlenet.keras")
        if not (args.reuse and os.path.isfile(source)):
            keras.utils.set_random_seed(0)
            model = GoogLeNet(variant=args.variant, classes=args.classes,
                              input_shape=(args.input_size, args.input_size, 3))
            model.save(source)
    paths = {"keras": source}
    wanted = [f for f in formats if f in FORMATS]
    todo = []
    for fmt in wanted:
        suffix = FORMATS[fmt][0]
        path = os.path.join(args.out_dir, "googlenet" + suffix)
        paths[fmt] = path
        if not (args.reuse and os.path.exists(path)):
            todo.append(fmt)
    if todo:
        calibration = np.random.default_rng(0).uniform(
            -1, 1, (64, args.input_size, args.input_size, 3)).astype("float32")
        export_model(source, args.out_dir, todo, name="googlenet",
                     calibration_data=calibration if "tflite-int8" in todo else None,
                     calibration_steps=64, verification_samples=32)
    if args.compare_optimized:
        optimized_dir = os.path.join(args.out_dir, "optimized")
        chosen = [f for f in OPTIMIZED_FORMATS if f in formats]
        for fmt in chosen:
            paths[f"{fmt}:optimized"] = os.path.join(optimized_dir, "googlenet" + FORMATS[fmt][0])
        todo = [f for f in chosen if not (args.reuse and os.path.exists(paths[f"{f}:optimized"]))]
        if todo:
            calibration = np.random.default_rng(0).uniform(
                -1, 1, (64, args.input_size, args.input_size, 3)).astype("float32")
            export_model(source, optimized_dir, todo, name="googlenet", optimize=True,
                         calibration_data=calibration if "tflite-int8" in todo else None,
                         calibration_steps=64, verification_samples=32)
    return paths


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.worker:
        worker(args.worker, args.worker_threads, args)
        return 0
    if args.reference_onnx and not os.path.isfile(args.reference_onnx):
        print(f"--reference-onnx: no such file {args.reference_onnx!r}", file=sys.stderr)
        return 2
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    paths = export_artefacts(args, formats)
    selected = []
    for label, fmt in ROWS:
        if fmt in formats:
            selected.append((label, fmt))
            if args.mediapipe and fmt.startswith("tflite"):
                paths[fmt + MEDIAPIPE] = paths[fmt]
                selected.append((f"{label} in MediaPipe ImageClassifier (incl. its "
                                 "preprocessing)", fmt + MEDIAPIPE))
    if args.compare_optimized:
        selected += [(OPTIMIZED_LABELS[f], f"{f}:optimized")
                     for f in OPTIMIZED_FORMATS if f in formats]
    if args.reference_onnx:
        paths[REFERENCE] = args.reference_onnx
        selected.append(("Reference ONNX in ONNX Runtime "
                         f"({os.path.basename(args.reference_onnx)})", REFERENCE))
    measured = {}
    for n in threads:
        command = [sys.executable, os.path.abspath(__file__), "--worker-threads", str(n),
                   "--runs", str(args.runs), "--warmup", str(args.warmup),
                   "--batch", str(args.batch if n == max(threads) else 0),
                   "--batch-runs", str(args.batch_runs)]
        for _, fmt in selected:
            command += ["--worker", fmt, paths[fmt]]
        print(f"timing {len(selected)} artefacts with {n} thread(s)...", file=sys.stderr,
              flush=True)
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(f"{n} thread(s) failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        measured[n] = json.loads(line[-1][len("RESULT "):])
    rows = [(label, fmt, _size(paths[fmt]),
             {n: measured[n][fmt] for n in measured if fmt in measured[n]})
            for label, fmt in selected]
    table = markdown_table(rows, threads, args)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


def markdown_table(rows, threads, args):
    head = ["artefact", "size (MB)"]
    head += [f"batch 1, {n} thread{'s' if n > 1 else ''} (ms, median / p90)" for n in threads]
    head += [f"batch {args.batch}, {max(threads)} threads (img/s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, _, size, measured in rows:
        cells = [label, f"{size / 1e6:.1f}"]
        for n in threads:
            m = measured.get(n)
            cells.append(f"{m['median_ms']:.1f} / {m['p90_ms']:.1f}" if m else "failed")
        m = measured.get(max(threads), {})
        cells.append(f"{m['images_per_s']:.0f}" if "images_per_s" in m else "-")
        lines.append("| " + " | ".join(cells) + " |")
    caption = (f"{args.variant if not args.source else args.source} at "
               f"{args.input_size}x{args.input_size}, {args.classes} classes; median of "
               f"{args.runs} runs after {args.warmup} warm-up runs.")
    return caption + "\n\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
