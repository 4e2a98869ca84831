"""What the first training step of the digits main job costs, and what cuts it (#21).

    python benchmarks/first_step.py [--settings default,no-grappler,...] [--steps 6]
        [--input-size 80] [--width-multiplier 1.0]

Each setting runs in its own process (graph options must be set before anything is traced):
the main job's model (`v1_bn`, 80 px, aux heads, batch 64, Adam with EMA, fp32), timed as

- build: `GoogLeNet(...)` and `compile_googlenet`;
- first train / eval step: the first `train_on_batch` / `test_on_batch`, i.e. tracing the
  step function, Grappler's graph optimisation, oneDNN's primitive creation and one step;
- steady train / eval step: the median of the next `--steps` calls.

Prints a markdown table; "first epoch / steady" estimates the main job's epoch-1 ratio from
these parts (23 training steps, 6 validation steps per epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TRAIN_STEPS, EVAL_STEPS = 23, 6  # digits: 1,438 training and 359 validation images, batch 64

# setting -> (Keras' own Adam?, build the optimizer before the first step?, Grappler
# options), the options being tf.config.optimizer.set_experimental_options keys. "keras" is
# plain `model.compile` with Keras' Adam, which leaves its slots to be created while the first
# step is traced; "keras-adam" builds Keras' Adam up front; "default" is `compile_googlenet`
# with `keras_googlenet.optimizers.Adam` (one fused kernel per variable), built up front.
SETTINGS = {
    "keras": (True, False, {}),
    "keras-adam": (True, True, {}),
    "default": (False, True, {}),
    "no-grappler": (False, True, {"disable_meta_optimizer": True}),
    "no-layout": (False, True, {"layout_optimizer": False}),
    "no-constfold": (False, True, {"constant_folding": False}),
    "no-arith+dep": (False, True, {"arithmetic_optimization": False,
                                   "dependency_optimization": False}),
}


def measure(setting, steps, input_size=80, width_multiplier=1.0):
    import numpy as np

    from keras_googlenet_training.cpu import choose_cpu_kernels

    choose_cpu_kernels()  # what the CLIs run: oneDNN on an AVX2-only CPU too
    import tensorflow as tf

    keras_adam, prebuilt, options = SETTINGS[setting]
    tf.config.optimizer.set_experimental_options(options)
    import keras

    import keras_googlenet as kg

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = kg.GoogLeNet(variant="v1_bn", input_shape=(input_size, input_size, 3), classes=10,
                         include_aux=True, width_multiplier=width_multiplier)
    adam = keras.optimizers.Adam if keras_adam else kg.optimizers.Adam
    kg.compile_googlenet(model, optimizer=adam(2e-3, use_ema=True))
    if not prebuilt:  # the same losses and metrics, with a new optimizer left unbuilt
        model.compile(adam(2e-3, use_ema=True), loss=model.loss,
                      loss_weights=kg.DEFAULT_LOSS_WEIGHTS,
                      metrics={h: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
                               for h in model.output})
    build = time.perf_counter() - start
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, input_size, input_size, 3)).astype("float32")
    y = kg.head_targets(model, rng.integers(0, 10, 64))

    def timed(call):
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    first_train = timed(lambda: model.train_on_batch(x, y))
    train = float(np.median([timed(lambda: model.train_on_batch(x, y)) for _ in range(steps)]))
    first_eval = timed(lambda: model.test_on_batch(x, y))
    evaluate = float(np.median([timed(lambda: model.test_on_batch(x, y))
                                for _ in range(steps)]))
    return {"build": build, "first_train": first_train, "train": train,
            "first_eval": first_eval, "eval": evaluate}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--input-size", type=int, default=80, help="the main job's: 80")
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be a positive integer")
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.input_size,
                                 args.width_multiplier)))
        return 0
    settings = args.settings.split(",")
    if unknown := sorted(set(settings) - set(SETTINGS)):
        parser.error(f"--settings: unknown {unknown}; choose from {sorted(SETTINGS)}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    print("| setting | build s | first train step s | steady train step s | first eval step s "
          "| steady eval step s | first epoch / steady |")
    print("|---|---|---|---|---|---|---|")
    for setting in settings:
        done = subprocess.run([sys.executable, __file__, "--child", setting, "--steps",
                               str(args.steps), "--input-size", str(args.input_size),
                               "--width-multiplier", str(args.width_multiplier)],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"the {setting} row failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        out = done.stdout
        r = json.loads(out.strip().splitlines()[-1])
        steady = TRAIN_STEPS * r["train"] + EVAL_STEPS * r["eval"]
        first = (r["first_train"] + (TRAIN_STEPS - 1) * r["train"] + r["first_eval"]
                 + (EVAL_STEPS - 1) * r["eval"])
        print(f"| {setting} | {r['build']:.1f} | {r['first_train']:.1f} | {r['train']:.2f} "
              f"| {r['first_eval']:.1f} | {r['eval']:.2f} | {first / steady:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
