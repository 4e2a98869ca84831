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

`--xnnpack-off` adds TFLite fp32 and int8 rows run by LiteRT's own kernels, without its
default XNNPACK delegate (batch 1), to show what XNNPACK's int8 kernels bring.

After the table, int8's speed-up over LiteRT fp32 (same rounds, batch 1) per thread count,
with the CPU's model name and the int8 instruction set read from /proc/cpuinfo (AMX,
AVX512-VNNI, AVX-VNNI, AVX2; on ARM i8mm, dot product), against issue #19's targets:
at least 3x with VNNI or AMX, not slower than fp32 on AVX2 alone (both at 224 px).

Prints markdown tables (and writes them with `--markdown`). Not a test: numbers depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

XNNPACK_OFF = ":xnnpack-off"  # suffix of a TFLite format: that file in LiteRT's own kernels

# /proc/cpuinfo flag -> the int8 instruction set XNNPACK's kernels use, best first.
INT8_INSTRUCTION_SETS = (
    ("amx_int8", "AMX"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx2", "AVX2"),
    ("i8mm", "ARM i8mm"),
    ("asimddp", "ARM dot product"),
)
# Also named in the report: bf16 and AMX tiles say which kernels the CPU could run.
REPORTED_FLAGS = ("amx_int8", "amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni",
                  "avx_vnni", "avx512f", "avx2", "i8mm", "asimddp", "bf16")
# Issue #19's targets for int8 / LiteRT fp32 at 224 px, batch 1, by instruction set.
SPEEDUP_TARGETS = {"AMX": 3.0, "AVX512-VNNI": 3.0, "AVX-VNNI": 3.0, "AVX2": 1.0}


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
    p.add_argument("--reference-onnx", default=None, metavar="PATH",
                   help="also time this NCHW .onnx (e.g. torchvision's own GoogLeNet, from "
                   "`benchmarks/investigations/torchvision_onnx.py export`) in ONNX Runtime, "
                   "same rounds")
    p.add_argument("--mediapipe", action=argparse.BooleanOptionalAction, default=True,
                   help="a MediaPipe ImageClassifier row per TFLite artefact")
    p.add_argument("--xnnpack-off", action="store_true",
                   help="also time TFLite fp32 and int8 without LiteRT's XNNPACK delegate")
    p.add_argument("--markdown", default=None, help="write the tables to this file")
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


class _LiteRTWithoutXNNPACK:
    """A `.tflite` in LiteRT's own kernels (no default delegate); batch 1, fixed input."""

    batched = False

    def __init__(self, path, threads):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interpreter = Interpreter(
            model_path=path, num_threads=threads,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        detail = self.interpreter.get_input_details()[0]
        self.input_index = detail["index"]
        # int8 kernels take the same time whatever the values: any input of the right type.
        self.input = np.zeros(detail["shape"], dtype=detail["dtype"])

    def _run(self, x):  # the fixed input stands in for `x`
        self.interpreter.set_tensor(self.input_index, self.input)
        self.interpreter.invoke()


def cpu_kind(cpuinfo="/proc/cpuinfo"):
    """(the CPU's model name, its best int8 instruction set, the `REPORTED_FLAGS` it has)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            name = value
        elif key in ("flags", "Features"):  # x86, ARM
            flags.update(value.split())
    best = next((isa for flag, isa in INT8_INSTRUCTION_SETS if flag in flags), "none found")
    return name, best, [flag for flag in REPORTED_FLAGS if flag in flags]


def speedup_table(measured, threads, args, cpu=None):
    """int8's speed-up over LiteRT fp32 per thread count, with the CPU kind and target."""
    name, isa, flags = cpu or cpu_kind()
    target = SPEEDUP_TARGETS.get(isa)
    lines = ["| CPU | int8 instruction set | threads | fp32 (ms) | int8 (ms) | int8 speed-up "
             "| issue #19 target |", "|---|---|---|---|---|---|---|"]
    for n in threads:
        times = measured.get(n, {})
        if "tflite-fp32" not in times or "tflite-int8" not in times:
            continue
        fp32, int8 = times["tflite-fp32"]["median_ms"], times["tflite-int8"]["median_ms"]
        ratio = fp32 / int8
        verdict = "-" if target is None else (
            f">= {target:g}x: {'met' if ratio >= target else 'MISSED'}")
        if target is not None and args.input_size != 224:
            verdict += f" (targets are for 224 px, not {args.input_size})"
        lines.append(f"| {name} | {isa} ({', '.join(flags) or 'no flags read'}) | {n} | "
                     f"{fp32:.1f} | {int8:.1f} | {ratio:.2f}x | {verdict} |")
    if len(lines) == 2:
        return ""
    return ("int8 / LiteRT fp32, batch 1, medians of the same rounds:\n\n" + "\n".join(lines))


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
        if fmt.endswith(XNNPACK_OFF):
            predictors[fmt] = _LiteRTWithoutXNNPACK(path, threads)
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
    selected = _select_rows(args, formats, paths)
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
    speedup = speedup_table(measured, threads, args)
    if speedup:
        table += "\n\n" + speedup
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


def _select_rows(args, formats, paths):
    """(row label, row key) of every row to time; `paths` gains the extra rows' files."""
    selected = []
    for label, fmt in ROWS:
        if fmt not in formats:
            continue
        selected.append((label, fmt))
        if args.mediapipe and fmt.startswith("tflite"):
            paths[fmt + MEDIAPIPE] = paths[fmt]
            selected.append((f"{label} in MediaPipe ImageClassifier (incl. its "
                             "preprocessing)", fmt + MEDIAPIPE))
        if args.xnnpack_off and fmt in ("tflite-fp32", "tflite-int8"):
            paths[fmt + XNNPACK_OFF] = paths[fmt]
            selected.append((f"{label}, XNNPACK off (LiteRT's own kernels)", fmt + XNNPACK_OFF))
    if args.reference_onnx:
        paths[REFERENCE] = args.reference_onnx
        selected.append(("Reference ONNX in ONNX Runtime "
                         f"({os.path.basename(args.reference_onnx)})", REFERENCE))
    return selected


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
