"""Do graph rewrites that keep the math make the exported GoogLeNet faster? (They did not.)

    python benchmarks/investigations/optimize_for_inference.py --threads 2

`optimize_for_inference` folds every Conv2D -> BatchNormalization pair into one Conv2D with
bias and merges the 1x1 convs (each followed by a plain ReLU) that read the same tensor, such
as an Inception block's `1x1`, `3x3_reduce` and `5x5_reduce`, into one wider conv + ReLU whose
output is split back by channels (`ChannelSplit`). The script checks that the rewrite keeps the
outputs (non-trivial BatchNorm statistics; exit 1 if not), converts the plain and the rewritten
model alike (`keras_googlenet.export.convert`) to TFLite fp32, TFLite int8 and ONNX, and times
them in alternating rounds in LiteRT and ONNX Runtime. The finding is in README.md here.

An experiment, not the library: it walks Keras' private `_nodes_by_depth` and
`_outputs_struct`, so a Keras upgrade may break it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

import keras
import numpy as np

# The shared timing loop lives one folder up, beside the product benchmarks.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _timing import median_ms  # noqa: E402


@keras.saving.register_keras_serializable(package="googlenet_investigations")
class ChannelSplit(keras.layers.Layer):
    """Split the last axis into pieces of `sizes` channels (undoes a merged conv)."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(size) for size in sizes]

    def call(self, inputs):
        return keras.ops.split(inputs, np.cumsum(self.sizes)[:-1].tolist(), axis=-1)

    def compute_output_shape(self, input_shape):
        return [(*input_shape[:-1], size) for size in self.sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}


def _folded_conv_weights(conv, bn):
    """(kernel, bias) of `conv` followed by inference-mode `bn`, as one conv with bias."""
    weights = conv.get_weights()
    kernel = weights[0].astype("float64")
    bias = weights[1].astype("float64") if conv.use_bias else np.zeros(kernel.shape[-1])
    if bn is not None:
        gamma = bn.gamma.numpy() if bn.scale else np.ones(kernel.shape[-1])
        beta = bn.beta.numpy() if bn.center else np.zeros(kernel.shape[-1])
        factor = gamma / np.sqrt(bn.moving_variance.numpy().astype("float64") + bn.epsilon)
        kernel = kernel * factor
        bias = (bias - bn.moving_mean.numpy()) * factor + beta
    return kernel.astype("float32"), bias.astype("float32")


def _plain_relu(layer):
    return isinstance(layer, keras.layers.ReLU) and layer.max_value is None \
        and not layer.negative_slope and not layer.threshold


def _is_linear(conv):
    return keras.activations.serialize(conv.activation) in ("linear", {"class_name": "linear"}) \
        or getattr(conv.activation, "__name__", "") == "linear"


def optimize_for_inference(model, fold_batch_norm=True, merge_1x1=True):
    """An equivalent single-input functional model with the rewrites above, for export.

    The result shares the other layers (and their variables) with `model`. Outputs agree
    with `model` to float32 rounding.
    """
    if not hasattr(model, "_nodes_by_depth") or len(model.inputs) != 1:
        raise ValueError("`model` must be a single-input functional Keras model.")
    nodes = [n for depth in sorted(model._nodes_by_depth, reverse=True)
             for n in model._nodes_by_depth[depth]]
    units = _conv_units(nodes, fold_batch_norm)
    groups = _merge_groups(units) if merge_1x1 else {}
    return _rebuild(model, nodes, units, groups)


def _conv_units(nodes, fold_batch_norm):
    """Per plain Conv2D (keyed by id): the conv, the BatchNorm and ReLU that alone read
    its output, its input tensor, the tensor before the ReLU and the unit's output."""
    consumers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)

    def only_consumer(tensor, kind):
        users = consumers.get(id(tensor), [])
        return users[0] if len(users) == 1 and isinstance(users[0].operation, kind) else None

    units = {}
    for node in nodes:
        conv = node.operation
        if type(conv) is not keras.layers.Conv2D or len(node.input_tensors) != 1 \
                or not _is_linear(conv):
            continue
        out = node.outputs[0]
        bn_node = only_consumer(out, keras.layers.BatchNormalization) if fold_batch_norm \
            else None
        if bn_node is not None and bn_node.operation.axis not in (-1, 3):
            bn_node = None
        pre_relu = bn_node.outputs[0] if bn_node is not None else out
        relu_node = only_consumer(pre_relu, keras.layers.ReLU)
        if relu_node is not None and not _plain_relu(relu_node.operation):
            relu_node = None
        units[id(conv)] = {
            "conv": conv, "bn": bn_node.operation if bn_node else None,
            "bn_node": bn_node, "relu_node": relu_node,
            "input": node.input_tensors[0], "pre_relu": pre_relu,
            "out": relu_node.outputs[0] if relu_node else None,
        }
    return units


def _merge_groups(units):
    """id(conv) -> the 1x1 conv + ReLU units that read the same tensor, two or more."""
    by_input = {}
    for unit in units.values():
        conv = unit["conv"]
        if unit["out"] is not None and tuple(conv.kernel_size) == (1, 1) \
                and tuple(conv.strides) == (1, 1) and tuple(conv.dilation_rate) == (1, 1) \
                and conv.groups == 1:
            by_input.setdefault(id(unit["input"]), []).append(unit)
    return {id(unit["conv"]): members for members in by_input.values() if len(members) > 1
            for unit in members}


def _merged_conv(members, tensors, pending_weights):
    """One conv + ReLU for a merge group, split back per member into `tensors`."""
    sizes = [u["conv"].filters for u in members]
    stem = os.path.commonprefix([u["conv"].name for u in members]).rstrip("_") or "merged"
    merged = keras.layers.Conv2D(sum(sizes), 1, use_bias=True, name=f"{stem}_merged_1x1")
    y = keras.layers.ReLU(name=f"{stem}_merged_1x1_relu")(
        merged(tensors[id(members[0]["input"])]))
    pieces = ChannelSplit(sizes, name=f"{stem}_split")(y)
    for unit, piece in zip(members, pieces, strict=True):
        tensors[id(unit["out"])] = piece
    folded = [_folded_conv_weights(u["conv"], u["bn"]) for u in members]
    pending_weights.append((merged, [np.concatenate([k for k, _ in folded], axis=-1),
                                     np.concatenate([b for _, b in folded])]))


def _rebuild(model, nodes, units, groups):
    """Call every layer again on new tensors, with folded and merged convs in place."""
    new_input = keras.Input(shape=model.inputs[0].shape[1:], name=model.inputs[0].name)
    tensors = {id(model.inputs[0]): new_input}
    built = set()
    pending_weights = []  # set once every new layer is built
    replaced = set()  # BN nodes folded away, ReLU nodes merged away
    for unit in units.values():
        if unit["bn_node"] is not None:
            replaced.add(id(unit["bn_node"]))
        if id(unit["conv"]) in groups:
            replaced.add(id(unit["relu_node"]))
    for node in nodes:
        if node.is_input or not node.operation or id(node) in replaced:
            continue
        layer = node.operation
        if id(layer) in groups:
            if id(layer) not in built:
                built.update(id(u["conv"]) for u in groups[id(layer)])
                _merged_conv(groups[id(layer)], tensors, pending_weights)
            continue
        if id(layer) in units and units[id(layer)]["bn"] is not None:
            unit = units[id(layer)]
            conv = keras.layers.Conv2D.from_config({**layer.get_config(), "use_bias": True})
            tensors[id(unit["pre_relu"])] = conv(tensors[id(unit["input"])])
            pending_weights.append((conv, list(_folded_conv_weights(layer, unit["bn"]))))
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = layer(*args, **kwargs)
        for original, new in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
            tensors[id(original)] = new
    for layer, weights in pending_weights:
        layer.set_weights(weights)
    outputs = keras.tree.map_structure(lambda t: tensors[id(t)], model._outputs_struct)
    return keras.Model(new_input, outputs, name=model.name)


def randomize_batch_norm(model, rng):
    """Non-trivial BatchNorm statistics, so that folding them is really exercised."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n)])


def convert(model, fmt, out_dir, tag):
    """`model` converted to `fmt` as the export does; returns the artefact's path."""
    from keras_googlenet.export.convert import convert_onnx, convert_tflite, write_savedmodel

    size = tuple(model.input_shape[1:3])
    if fmt == "onnx":
        path = os.path.join(out_dir, f"{tag}.onnx")
        convert_onnx(model, path)
        return path
    savedmodel = os.path.join(out_dir, f"{tag}_savedmodel")
    if not os.path.isdir(savedmodel):
        write_savedmodel(model, savedmodel, uint8_signature=False)
    images = np.random.default_rng(0).uniform(-1, 1, (32, *size, 3)).astype("float32")

    def representative():  # random images: right for timing, not for accuracy
        for i in range(len(images)):
            yield [images[i:i + 1]]

    path = os.path.join(out_dir, f"{tag}_{fmt}.tflite")
    with open(path, "wb") as f:
        f.write(convert_tflite(savedmodel, fmt, representative, int8_io="float32"))
    return path


def timer(path, threads):
    """A batch-1 call of the artefact at `path` in LiteRT or ONNX Runtime."""
    if path.endswith(".onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        shape = [1, *session.get_inputs()[0].shape[1:]]
        feed = {session.get_inputs()[0].name: np.zeros(shape, "float32")}
        return lambda: session.run(None, feed)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interpreter.invoke


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="torchvision")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--width-multiplier", type=float, default=1.0)
    p.add_argument("--formats", default="tflite-fp32,tflite-int8,onnx")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out-dir", default="/tmp/googlenet-optimize")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_googlenet import GoogLeNet

    rng = np.random.default_rng(0)
    model = GoogLeNet(variant=args.variant, classes=args.classes, include_aux=False,
                      width_multiplier=args.width_multiplier,
                      input_shape=(args.input_size, args.input_size, 3))
    randomize_batch_norm(model, rng)
    optimized = optimize_for_inference(model)
    x = rng.uniform(-1, 1, (2, args.input_size, args.input_size, 3)).astype("float32")
    diff = float(np.max(np.abs(np.asarray(optimized(x)) - np.asarray(model(x)))))
    print(f"max |optimized - plain| = {diff:.2e} (softmax outputs)")
    if diff > 1e-5:
        print("the rewrite changed the outputs", file=sys.stderr)
        return 1
    os.makedirs(args.out_dir, exist_ok=True)
    paths = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the converters' chatter
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            for tag, rewritten in (("plain", model), ("optimized", optimized)):
                paths[fmt, tag] = convert(rewritten, fmt, args.out_dir, tag)
    # Alternating rounds, so that background load hits both alike.
    calls = {key: timer(path, args.threads) for key, path in paths.items()}
    times = {key: [] for key in calls}
    for _ in range(args.rounds):
        for key, call in calls.items():
            times[key].append(median_ms(call, args.runs, warmup=3))
    print(f"| format | plain ms | optimized ms ({args.threads} threads, batch 1) |")
    print("|---|---|---|")
    for fmt in dict.fromkeys(fmt for fmt, _ in paths):
        plain, rewritten = (float(np.median(times[fmt, tag])) for tag in ("plain", "optimized"))
        print(f"| {fmt} | {plain:.2f} | {rewritten:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
