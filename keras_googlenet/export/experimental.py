"""Experimental graph rewrites for export (`export_model(optimize=True)`).

`optimize_for_inference` folds BatchNorm into the convs and merges the 1x1 convs that
read the same tensor. Measured result (docs/export.md, 2-core CPU): no faster. The
TFLite converter and onnxruntime already fold BatchNorm, and the merged 1x1 conv gained
nothing over three separate ones. It stays off by default and is kept for experiments;
it walks Keras' private `_nodes_by_depth`, so a Keras upgrade may break it.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_googlenet.model_card import INPUT_NAME


@keras.saving.register_keras_serializable(package="keras_googlenet")
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


def optimize_for_inference(model, fold_batch_norm=True, merge_1x1=True):
    """An equivalent model with inference-time rewrites that keep the math.

    - `fold_batch_norm`: every Conv2D -> BatchNormalization pair becomes one Conv2D with
      bias (inference-mode statistics).
    - `merge_1x1`: 1x1 convs (each followed by a plain ReLU) that read the same tensor,
      such as an Inception block's `1x1`, `3x3_reduce` and `5x5_reduce`, become one wider
      conv + ReLU whose output is split back by channels.

    The result shares the other layers (and their variables) with `model`; it is meant
    for export, not training. Outputs agree with `model` to float32 rounding.
    """
    if not hasattr(model, "_nodes_by_depth") or len(model.inputs) != 1:
        raise ValueError("`model` must be a single-input functional Keras model.")
    nodes = [n for depth in sorted(model._nodes_by_depth, reverse=True)
             for n in model._nodes_by_depth[depth]]
    units = _conv_units(nodes, fold_batch_norm)
    groups = _merge_groups(units) if merge_1x1 else {}
    return _rebuild(model, nodes, units, groups)


def _is_linear(conv):
    return keras.activations.serialize(conv.activation) in ("linear", {"class_name": "linear"}) \
        or getattr(conv.activation, "__name__", "") == "linear"


def _conv_units(nodes, fold_batch_norm):
    """Per plain Conv2D (keyed by id): the conv, the BatchNorm and ReLU that alone read
    its output, its input tensor, the tensor before the ReLU and the unit's output."""
    consumers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)

    def only_consumer(tensor, kind):
        users = consumers.get(id(tensor), [])
        if len(users) == 1 and isinstance(users[0].operation, kind):
            return users[0]
        return None

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
    groups = {}
    for members in by_input.values():
        if len(members) > 1:
            for unit in members:
                groups[id(unit["conv"])] = members
    return groups


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
    new_input = keras.Input(shape=model.inputs[0].shape[1:], name=model.inputs[0].name
                            if model.inputs[0].name else INPUT_NAME)
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
