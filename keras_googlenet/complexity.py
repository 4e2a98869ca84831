"""Parameter and multiply-add (MAC) counts per block, like the paper's Table 1. MACs count
convolutions and fully-connected layers, the convention behind torchvision's "1.50 GFLOPS";
pooling, BatchNorm, LRN and activations are not counted."""

import math

import keras

from keras_googlenet import spec as spec_lib

__all__ = ["count_macs", "count_params", "format_profile", "layer_macs", "model_profile"]

# "conv2_reduce" comes before "conv2", which would otherwise swallow it.
_GROUP_PREFIXES = spec_lib.BLOCK_NAMES + tuple(spec_lib.AUX_TAPS) + (
    "conv1", "conv2_reduce", "conv2")


def layer_macs(layer):
    """Multiply-adds of one layer for one image (0 for layers that do no matmul)."""
    if isinstance(layer, keras.layers.Conv2D):
        out_h, out_w = layer.output.shape[1:3]
        if out_h is None or out_w is None:
            raise ValueError(f"Layer {layer.name!r} has a dynamic output size "
                             f"{layer.output.shape}; MACs need a model built with a fixed "
                             "`input_shape`.")
        return out_h * out_w * math.prod(layer.kernel.shape)  # kh * kw * in / groups * out
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.kernel.shape)
    return 0


def model_profile(model):
    """Rows of `{"name", "output_shape", "params", "macs"}`, one per stem layer, block and
    head: `params` counts trainable weights, `macs` multiply-adds per image."""
    rows = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        group = next((prefix for prefix in _GROUP_PREFIXES if layer.name == prefix
                      or layer.name.startswith(prefix + "_")), layer.name)
        row = rows.setdefault(group, {"name": group, "output_shape": None, "params": 0, "macs": 0})
        row["params"] += count_params(layer)
        row["macs"] += layer_macs(layer)
        if layer.name == group or row["output_shape"] is None:
            row["output_shape"] = tuple(layer.output.shape[1:])
    return list(rows.values())


def count_macs(model):
    """Total multiply-adds per image of `model` (a GoogLeNet or any Keras model)."""
    return sum(layer_macs(layer) for layer in model.layers)


def count_params(model):
    """Trainable parameters of `model` (or of one layer)."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def format_profile(rows, title=None):
    """A Table-1-like text table with totals."""
    header = f"{'layer':<22}{'output':>16}{'params':>14}{'MACs':>16}"
    lines = [*([title] if title else []), header, "-" * len(header)]
    feature_maps = (*spec_lib.ENDPOINTS, "avg_pool", "max_pool")  # shown though computing nothing
    for row in rows:
        if not (row["params"] or row["macs"] or row["name"] in feature_maps):
            continue  # padding, dropout, flatten: nothing to report
        shape = "x".join("?" if d is None else str(d) for d in row["output_shape"])
        lines.append(f"{row['name']:<22}{shape:>16}{row['params']:>14,}{row['macs']:>16,}")
    total_params, total_macs = (sum(row[key] for row in rows) for key in ("params", "macs"))
    lines += ["-" * len(header), f"{'total':<22}{'':>16}{total_params:>14,}{total_macs:>16,}",
              f"{'':<22}{'':>16}{total_params / 1e6:>13.3f}M{total_macs / 1e9:>15.3f}G"]
    return "\n".join(lines)
