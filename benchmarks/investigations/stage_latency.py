"""Batch-1 latency of each GoogLeNet stage in LiteRT fp32 against ONNX Runtime or LiteRT int8.

    python benchmarks/investigations/stage_latency.py --threads 2 [--against int8]

Cuts the float32 inference model at `keras_googlenet.ENDPOINTS` (conv1, pool1, ...,
inception_5b, then the head), converts every stage on its own to TFLite (XNNPACK) and to
ONNX (tf2onnx) or, with `--against int8`, to full-integer TFLite (int8 in and out, as inside
the whole model, calibrated on the previous stages' outputs for random images), and times
each in its runtime: median of `--rounds` medians of `--runs` calls. Shows where one loses
time to the other, stage by stage (#19's per-op profile of int8 on AVX2). Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

import numpy as np

# The shared timing loop lives one folder up, beside the product benchmarks.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _timing import median_ms  # noqa: E402


def stage_models(model):
    """[(name, stage model, MACs)] from the input to the last endpoint, then the head."""
    import keras

    import keras_googlenet as kg

    stages, start = [], model.input
    names = [*kg.ENDPOINTS, None]
    for name in names:
        end = model.output if name is None else model.get_layer(name).output
        stage = keras.Model(start, end, name=f"stage_{name or 'head'}")
        macs = sum(
            int(np.prod(layer.output.shape[1:])) * int(np.prod(layer.kernel.shape[:-1]))
            for layer in stage.layers
            if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
        )
        stages.append((name or "head", stage, macs))
        start = end
    return stages


def time_litert(stage, threads, rounds, runs, calibration=None):
    """fp32, or full-integer int8 calibrated on `calibration` (the stage's inputs)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_keras_model(stage)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        blob = converter.convert()
    interpreter = Interpreter(model_content=blob, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return median_ms(interpreter.invoke, runs, rounds=rounds)


def time_onnxruntime(stage, threads, rounds, runs):
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    shape = (1, *stage.input.shape[1:])
    spec = (tf.TensorSpec(shape, tf.float32, name="x"),)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        proto, _ = tf2onnx.convert.from_keras(stage, input_signature=spec, opset=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    return median_ms(lambda: sess.run(None, feed), runs, rounds=rounds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="torchvision")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--against", choices=("onnx", "int8"), default="onnx")
    p.add_argument("--calibration-images", type=int, default=8)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras_googlenet as kg

    model = kg.GoogLeNet(weights=None, variant=args.variant, include_aux=False,
                         input_shape=(args.input_size, args.input_size, 3))
    other = "ONNX Runtime" if args.against == "onnx" else "LiteRT int8"
    print(f"| stage | M MACs | LiteRT fp32 ms | {other} ms | fp32 / {args.against} |")
    print("|---|---|---|---|---|")
    totals = [0.0, 0.0]
    inputs = np.random.default_rng(0).uniform(
        -1, 1, (args.calibration_images, args.input_size, args.input_size, 3)).astype("float32")
    for name, stage, macs in stage_models(model):
        litert = time_litert(stage, args.threads, args.rounds, args.runs)
        if args.against == "onnx":
            against = time_onnxruntime(stage, args.threads, args.rounds, args.runs)
        else:
            against = time_litert(stage, args.threads, args.rounds, args.runs, inputs)
            inputs = stage.predict(inputs, verbose=0)  # the next stage's calibration images
        totals[0] += litert
        totals[1] += against
        print(f"| {name} | {macs / 1e6:.0f} | {litert:.2f} | {against:.2f} "
              f"| {litert / against:.2f} |", flush=True)
    print(f"| sum | | {totals[0]:.2f} | {totals[1]:.2f} | {totals[0] / totals[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
