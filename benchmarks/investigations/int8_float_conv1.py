"""Whole-model int8 with and without `conv1_conv` in float, against LiteRT fp32 (#19, AVX2).

    python benchmarks/investigations/int8_float_conv1.py [--threads 2] [--rounds 5]

`stage_latency.py --against int8` found that on an AVX2-only CPU conv1 (7x7/2 over 3 input
channels) runs 2.3x slower in XNNPACK's int8 kernels than in its fp32 ones, while the other
stages gain 1.2-2.8x. This exports the `torchvision` topology at 224 px (random weights, int8
calibrated on 16 random images, int8 I/O because `int8_float_layers` needs it) as fp32, int8
and int8 with `int8_float_layers=["conv1_conv"]`, and times the three at batch 1 in
interleaved rounds. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _timing import call_times_ms  # noqa: E402

VERSIONS = (("int8", None), ("int8, conv1_conv in float", ["conv1_conv"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from ai_edge_litert.interpreter import Interpreter

    import keras_googlenet as kg
    from keras_googlenet.export import export_model

    keras.utils.set_random_seed(0)
    model = kg.GoogLeNet(variant="torchvision")
    images = np.random.default_rng(0).uniform(-1, 1, (16, 224, 224, 3)).astype("float32")
    paths, out = {}, tempfile.mkdtemp()
    for tag, layers in VERSIONS:
        report = export_model(model, os.path.join(out, str(len(paths))),
                              ["tflite-int8"] + (["tflite-fp32"] if layers is None else []),
                              calibration_data=images, calibration_steps=len(images),
                              int8_io="int8", int8_float_layers=layers, verify=False,
                              verbose=False)
        for result in report.results:
            paths[tag if result.format == "tflite-int8" else "fp32"] = result.path
    calls = {}
    for tag, path in paths.items():
        interpreter = Interpreter(model_path=path, num_threads=args.threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        calls[tag] = interpreter.invoke
    ms = {tag: [] for tag in calls}
    for _ in range(args.rounds):
        for tag, call in calls.items():
            ms[tag].append(np.median(call_times_ms(call, args.runs, warmup=3)))
    fp32 = float(np.median(ms["fp32"]))
    print(f"| TFLite ({args.threads} threads, batch 1) | ms | speed-up over fp32 |")
    print("|---|---|---|")
    for tag in ms:
        print(f"| {tag} | {np.median(ms[tag]):.1f} | {fp32 / np.median(ms[tag]):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
