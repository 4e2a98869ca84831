"""Training throughput of GoogLeNet (with aux heads) per precision and TensorFlow setting,
against torchvision's GoogLeNet and the machine's peak.

    python benchmarks/train_throughput.py [--variant torchvision] [--batch-size 32]
        [--steps 8] [--warmup 2] [--repeats 3] [--precisions float32,mixed_bfloat16]
        [--settings default,inter1,...] [--baseline] [--torch-python PATH] [--cpu-isa avx2]

A row is the median of `--steps` `train_on_batch` steps after `--warmup` untimed ones (the
first traces the step), in its own process: the dtype policy, TensorFlow's thread pools and
`TF_ENABLE_ONEDNN_OPTS` must be set before the model is built or TensorFlow starts. The rows
are interleaved, each repeat running every setting followed by the torchvision row, so a
shared machine's slow stretches fall on both alike; the table shows the median over repeats
and every repeat. torchvision's row (`googlenet(aux_logits=True, init_weights=True)`, SGD
with momentum, loss main + 0.3 aux1 + 0.3 aux2, as many threads as TensorFlow's default)
runs under `--torch-python` (default: this Python), and is left out when torch and
torchvision are not importable there. A training image costs about 3x the inference MACs x
2 FLOPs = 9.0 GFLOP at 224 px; the peak is measured in each of our processes with a 2048^3
matmul in the matching dtype. Prints a markdown table.

The `default` row runs what our commands run (`keras_googlenet_training.cpu
.choose_cpu_kernels`: oneDNN, on an AVX2-only CPU too); `onednn0` is Eigen, TensorFlow's own
choice on an AVX2-only CPU. `--cpu-isa avx2` stands in for such a CPU on a newer one: every
row's oneDNN (TensorFlow's and PyTorch's), MKL and PyTorch's own kernels are limited to AVX2
and FMA code. The same instructions, not the same caches, memory or clocks: a ratio it shows
is to be confirmed on the real kind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import types

FLOPS_PER_TRAINING_IMAGE_PER_MAC = 6  # forward 2 FLOPs/MAC, backward about twice that
TORCH_MODEL = "torchvision"
# setting -> (environment set before TensorFlow is imported, inter-op threads, intra-op
# threads, jit_compile); None leaves TensorFlow's default (both pools: one thread per core).
SETTINGS = {
    "default": ({}, None, None, "auto"),
    "inter1": ({}, 1, None, "auto"),  # Inception's four branches one after another
    "intra2": ({}, None, 2, "auto"),
    "inter1-intra2": ({}, 1, 2, "auto"),
    "onednn0": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, None, None, "auto"),
    "onednn1": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, None, None, "auto"),
    "jit": ({}, None, None, True),
    # our model with keras.layers.BatchNormalization instead of FusedBatchNormalization
    "keras-bn": ({}, None, None, "auto"),
}
# --cpu-isa -> the environment that limits every row's kernels to that instruction set.
CPU_ISA_ENVIRONMENT = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"},
}


def plain_googlenet(input_size):
    """A straightforward hand-written Keras GoogLeNet (torchvision topology, aux heads).

    The yardstick: the machine's speed varies over time (the same step has measured 1.3 s
    and 2.0 s within an hour), so compare against this in the same run, not against
    figures from another day.
    """
    import keras
    from keras import layers

    def cbr(x, filters, kernel, strides=1):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return layers.ReLU()(layers.BatchNormalization(epsilon=1e-3)(x))

    def block(x, a, b, c, d, e, f):
        return layers.Concatenate()([
            cbr(x, a, 1), cbr(cbr(x, b, 1), c, 3), cbr(cbr(x, d, 1), e, 3),
            cbr(layers.MaxPooling2D(3, 1, "same")(x), f, 1)])

    def aux(x, name):
        x = layers.Flatten()(cbr(layers.AveragePooling2D(5, 3)(x), 128, 1))
        x = layers.Dropout(0.7)(layers.Dense(1024, activation="relu")(x))
        return layers.Dense(1000, activation="softmax", dtype="float32", name=name)(x)

    image = keras.Input((input_size, input_size, 3))
    x = layers.MaxPooling2D(3, 2, "same")(cbr(image, 64, 7, 2))
    x = layers.MaxPooling2D(3, 2, "same")(cbr(cbr(x, 64, 1), 192, 3))
    x = block(block(x, 64, 96, 128, 16, 32, 32), 128, 128, 192, 32, 96, 64)
    x = block(layers.MaxPooling2D(3, 2, "same")(x), 192, 96, 208, 16, 48, 64)
    aux1 = aux(x, "aux1")
    x = block(block(block(x, 160, 112, 224, 24, 64, 64), 128, 128, 256, 24, 64, 64),
              112, 144, 288, 32, 64, 64)
    aux2 = aux(x, "aux2")
    x = layers.MaxPooling2D(2, 2, "same")(block(x, 256, 160, 320, 32, 128, 128))
    x = block(block(x, 256, 160, 320, 32, 128, 128), 384, 192, 384, 48, 128, 128)
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    main = layers.Dense(1000, activation="softmax", dtype="float32", name="main")(x)
    return keras.Model(image, {"main": main, "aux1": aux1, "aux2": aux2})


def step_seconds(step, warmup, steps):
    """The median seconds of `steps` calls of `step()` after `warmup` untimed ones."""
    import numpy as np
    from _timing import call_times_ms  # benchmarks/, this script's folder

    return float(np.median(call_times_ms(step, steps, warmup))) / 1e3


def matmul_peak_flops(dtype):
    """FLOP/s of the best of 3 timed 2048^3 matmuls in `dtype`."""
    import tensorflow as tf

    n = 2048  # big enough for the peak, small enough not to cost a loaded machine minutes
    a = tf.cast(tf.random.uniform((n, n), dtype="float32"), dtype)
    matmul = tf.function(lambda m: tf.matmul(m, m))
    matmul(a).numpy()
    best = min(step_seconds(lambda: matmul(a).numpy(), 0, 1) for _ in range(3))
    return 2 * n**3 / best


def measure_keras(args):
    """Our row (or the plain baseline's) under `args.setting`, as a dict."""
    environment, inter_op, intra_op, jit_compile = SETTINGS[args.setting]
    os.environ.update(environment)
    from keras_googlenet_training.cpu import choose_cpu_kernels

    choose_cpu_kernels()  # what the CLIs run, unless the setting chose
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_googlenet as kg

    if inter_op is not None:  # only takes effect before TensorFlow's first op
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    if intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    keras.config.set_dtype_policy(args.precision)
    # Ours trains with the package's SGD (one fused kernel per variable), the baseline with
    # Keras'; the same update rule.
    sgd = keras.optimizers.SGD if args.plain else kg.optimizers.SGD
    optimizer = sgd(0.01, momentum=0.9)
    size = args.input_size
    if args.plain:
        model = plain_googlenet(size)
        model.compile(optimizer, loss={h: "sparse_categorical_crossentropy" for h in model.output},
                      loss_weights={"main": 1.0, "aux1": 0.3, "aux2": 0.3},
                      jit_compile=jit_compile)
    else:
        model = kg.GoogLeNet(include_aux=True, variant=args.variant, classes=1000,
                             input_shape=(size, size, 3))
        if args.setting == "keras-bn":
            from keras_googlenet.layers import portable_model

            model = portable_model(model)
        kg.compile_googlenet(model, optimizer=optimizer, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch_size, size, size, 3)).astype("float32")
    y = kg.head_targets(model, rng.integers(0, 1000, args.batch_size).astype("int32"))
    seconds = step_seconds(lambda: model.train_on_batch(x, y), args.warmup, args.steps)
    dtype = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(args.precision,
                                                                           "float32")
    return {"model": "plain Keras (baseline)" if args.plain else f"keras_googlenet {args.variant}",
            "step_s": seconds, "gflop_per_image": kg.count_macs(model)
            * FLOPS_PER_TRAINING_IMAGE_PER_MAC / 1e9, "peak_gflops": matmul_peak_flops(dtype) / 1e9}


def measure_torch(args):
    """torchvision's row: the same training step as benchmarks/gpu_check.py's, on the CPU."""
    import torch
    from gpu_check import step_times_torch  # this script's folder is first on sys.path

    torch.set_num_threads(os.cpu_count())  # TensorFlow's default intra-op pool size
    precision = "bfloat16" if args.precision == "mixed_bfloat16" else "float32"
    times, _ = step_times_torch(types.SimpleNamespace(
        precision=precision, batch_size=args.batch_size, input_size=args.input_size,
        classes=1000, warmup=args.warmup, steps=args.steps))
    return {"model": TORCH_MODEL, "step_s": statistics.median(times)}


def row_environment(cpu_isa, environ):
    """A row's process environment: `environ`, quiet, its kernels limited to `cpu_isa`."""
    environment = {**environ, "TF_CPP_MIN_LOG_LEVEL": "3", **CPU_ISA_ENVIRONMENT[cpu_isa]}
    return environment


def run_row(python, args, setting, precision, kind):
    """One row in its own process; its result dict, with what identifies it."""
    command = [python, __file__, "--worker", kind, "--setting", setting, "--precision",
               precision, *(f"--{name.replace('_', '-')}={getattr(args, name)}" for name in
                            ("variant", "batch_size", "steps", "warmup", "input_size"))]
    done = subprocess.run(command, capture_output=True, text=True,
                          env=row_environment(args.cpu_isa, os.environ))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the {kind} row ({setting}, {precision}) failed:\n"
                           + done.stderr[-3000:])
    result = json.loads(lines[-1][len("RESULT "):])
    result.update(precision=precision, setting="-" if kind == "torch" else setting,
                  images_per_second=args.batch_size / result["step_s"])
    print(f"  {result['model']} {precision} {result['setting']}: "
          f"{result['images_per_second']:.2f} img/s", file=sys.stderr, flush=True)
    return result


def torch_importable(python):
    try:
        done = subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True)
    except OSError:  # no such program
        return False
    return done.returncode == 0


def table(results, batch_size):
    """Markdown rows: per (model, precision, setting) the median img/s over the repeats."""
    groups = {}
    for r in results:
        groups.setdefault((r["model"], r["precision"], r["setting"]), []).append(r)
    torch_rate = {precision: statistics.median(r["images_per_second"] for r in rows)
                  for (model, precision, _), rows in groups.items() if model == TORCH_MODEL}
    lines = ["| model | precision | setting | img/s (median) | img/s per repeat | ms/step "
             "| achieved GFLOP/s | matmul peak GFLOP/s | of peak | vs torchvision |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (model, precision, setting), rows in groups.items():
        rate = statistics.median(r["images_per_second"] for r in rows)
        each = ", ".join(f"{r['images_per_second']:.2f}" for r in rows)
        peer = torch_rate.get(precision)
        ratio = f"{rate / peer:.2f}×" if peer else "–"
        if "peak_gflops" in rows[0]:
            achieved = rate * rows[0]["gflop_per_image"]
            peak = statistics.median(r["peak_gflops"] for r in rows)
            flops = f"{achieved:.0f} | {peak:.0f} | {100 * achieved / peak:.0f} %"
        else:
            flops = "– | – | –"
        lines.append(f"| {model} | {precision} | {setting} | {rate:.2f} | {each} | "
                     f"{1000 * batch_size / rate:.0f} | {flops} | {ratio} |")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="torchvision")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of rows")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--settings", default="default",
                        help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure a plain hand-written Keras GoogLeNet in the same run")
    parser.add_argument("--torch-python", help="a Python with torch and torchvision for the "
                        "torchvision row (default: this one, the row left out without torch)")
    parser.add_argument("--cpu-isa", choices=tuple(CPU_ISA_ENVIRONMENT), default="native",
                        help="limit every row's kernels to this instruction set (see above)")
    parser.add_argument("--worker", choices=("ours", "plain", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("batch_size", "steps", "repeats", "input_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.warmup < 1:
        parser.error("--warmup must be 1 or more (the first step traces)")
    if unknown := sorted(set(args.settings.split(",")) - set(SETTINGS)):
        parser.error(f"--settings: unknown {unknown}; choose from {', '.join(SETTINGS)}")
    if args.torch_python and not torch_importable(args.torch_python):
        parser.error(f"--torch-python {args.torch_python}: cannot import torch and torchvision")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        args.plain = args.worker == "plain"
        result = measure_torch(args) if args.worker == "torch" else measure_keras(args)
        print("RESULT " + json.dumps(result))
        return 0
    torch_python = args.torch_python or (sys.executable if torch_importable(sys.executable)
                                         else None)
    if torch_python is None:
        print("torchvision row left out: torch is not importable here (see --torch-python)",
              file=sys.stderr)
    kinds = ("ours", "plain") if args.baseline else ("ours",)
    results = []
    try:
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1} of {args.repeats}", file=sys.stderr, flush=True)
            for precision in args.precisions.split(","):
                for setting in args.settings.split(","):
                    results += [run_row(sys.executable, args, setting, precision, kind)
                                for kind in kinds]
                    if torch_python:
                        results.append(run_row(torch_python, args, setting, precision, "torch"))
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"\nGoogLeNet `{args.variant}` with aux heads, {args.input_size}x{args.input_size}, "
          f"batch {args.batch_size}, median of {args.steps} `train_on_batch` steps after "
          f"{args.warmup}, {args.repeats} interleaved repeats, {os.cpu_count()} threads"
          + ("" if args.cpu_isa == "native" else f", kernels limited to {args.cpu_isa}")
          + "\n")
    print(table(results, args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
