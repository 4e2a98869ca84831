"""Training throughput of GoogLeNet (with aux heads) per precision, against the machine's peak.

    python benchmarks/train_throughput.py [--variant torchvision] [--batch-size 32]
        [--steps 10] [--repeats 3] [--precisions float32,mixed_bfloat16] [--baseline]

Each precision runs in its own process (the dtype policy must be set before the model is
built). A training image costs about 3x the inference MACs x 2 FLOPs = 9.0 GFLOP at 224 px;
the peak is measured in the same run with a 4096^3 matmul in the matching dtype. Shared
machines have bursts where a step takes 2x or 4x as long: the table reports the best of
`--repeats` timed runs (as `timeit` does) and the median.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FLOPS_PER_TRAINING_IMAGE_PER_MAC = 6  # forward 2 FLOPs/MAC, backward about twice that


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


def measure(precision, variant, batch_size, steps, input_size, jit_compile, plain=False,
            repeats=3):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_googlenet as kg

    keras.config.set_dtype_policy(precision)
    if plain:
        model = plain_googlenet(input_size)
        heads = ("main", "aux1", "aux2")
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      loss={h: "sparse_categorical_crossentropy" for h in heads},
                      loss_weights={"main": 1.0, "aux1": 0.3, "aux2": 0.3},
                      jit_compile=jit_compile)
    else:
        model = kg.GoogLeNet(include_aux=True, variant=variant, classes=1000,
                             input_shape=(input_size, input_size, 3))
        kg.compile_googlenet(model, optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                             jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch_size, input_size, input_size, 3)).astype("float32")
    y = rng.integers(0, 1000, batch_size).astype("int32")
    data = tf.data.Dataset.from_tensors((x, kg.head_targets(model, y))).repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        timings.append(time.perf_counter() - start)
    elapsed = min(timings)  # the machine's noise only ever slows a run down
    macs = kg.count_macs(model)

    dtype = "bfloat16" if precision == "mixed_bfloat16" else (
        "float16" if precision == "mixed_float16" else "float32")
    n = 4096
    a = tf.random.uniform((n, n), dtype="float32")
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda m: tf.matmul(m, m))
    matmul(a).numpy()
    matmul_seconds = []
    for _ in range(5):
        t0 = time.perf_counter()
        matmul(a).numpy()
        matmul_seconds.append(time.perf_counter() - t0)
    peak = 2 * n**3 / min(matmul_seconds)

    images_per_second = steps * batch_size / elapsed
    flops = images_per_second * macs * FLOPS_PER_TRAINING_IMAGE_PER_MAC
    return {
        "model": "plain Keras (baseline)" if plain else f"keras_googlenet {variant}",
        "precision": precision,
        "images_per_second": images_per_second,
        "step_ms": 1000 * elapsed / steps,
        "median_images_per_second": steps * batch_size / sorted(timings)[len(timings) // 2],
        "gflop_per_image": macs * FLOPS_PER_TRAINING_IMAGE_PER_MAC / 1e9,
        "achieved_gflops": flops / 1e9,
        "peak_gflops": peak / 1e9,
        "fraction_of_peak": flops / peak,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="torchvision")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats; the table shows the best and the median")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--baseline", action="store_true",
                        help="also measure a plain hand-written Keras GoogLeNet in the same run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]

    if args.worker:
        result = measure(args.worker, args.variant, args.batch_size, args.steps,
                         args.input_size, jit, plain=args.plain, repeats=args.repeats)
        print("RESULT " + json.dumps(result))
        return 0

    rows = []
    jobs = [(p, plain) for p in args.precisions.split(",")
            for plain in ((False, True) if args.baseline else (False,))]
    for precision, plain in jobs:
        print(f"measuring {precision}{' (plain baseline)' if plain else ''} ...",
              file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", precision, "--variant", args.variant,
             "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--input-size", str(args.input_size), "--jit-compile", args.jit_compile,
             "--repeats", str(args.repeats),
             *(["--plain"] if plain else [])],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(lines[-1][len("RESULT "):]))

    print(f"\nGoogLeNet `{args.variant}` with aux heads, {args.input_size}x{args.input_size}, "
          f"batch {args.batch_size}, best of {args.repeats} x {args.steps} timed steps, "
          f"jit_compile={args.jit_compile}\n")
    print("| model | precision | img/s (best) | img/s (median) | ms/step | GFLOP/img "
          "| achieved GFLOP/s | matmul peak GFLOP/s | of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['images_per_second']:.1f} | "
              f"{r['median_images_per_second']:.1f} | {r['step_ms']:.0f} | "
              f"{r['gflop_per_image']:.1f} | {r['achieved_gflops']:.0f} | "
              f"{r['peak_gflops']:.0f} | {100 * r['fraction_of_peak']:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
