"""torchvision's state dict -> `GoogLeNet(variant="torchvision")`: the mapping and the port.

torchvision's `GoogLeNet_Weights.IMAGENET1K_V1` (`googlenet-1378be20.pth`, acc@1 69.778,
acc@5 89.530) has exactly the topology of `GoogLeNet(variant="torchvision")`: conv without
bias + BatchNorm(eps 1e-3) + ReLU, a 3x3 kernel in the "5x5" branch, a 2x2 pool4 and
adaptive 4x4 pooling in the aux heads. This module maps its state dict onto that model:

| torchvision | Keras | transform |
|---|---|---|
| `conv1`, `conv2`, `conv3` | `conv1`, `conv2_reduce`, `conv2` | |
| `inception3a.branch1` | `inception_3a_1x1` | |
| `.branch2.0`, `.branch2.1` | `_3x3_reduce`, `_3x3` | |
| `.branch3.0`, `.branch3.1` | `_5x5_reduce`, `_5x5` (a 3x3 kernel, vision#906) | |
| `.branch4.1` (`branch4.0` is the max pool) | `_pool_proj` | |
| `X.conv.weight` | `X_conv` kernel | OIHW -> HWIO |
| `X.bn.weight`/`bias`/`running_mean`/`running_var` | `X_bn` gamma/beta/moving mean/var | |
| `X.bn.num_batches_tracked` | (training counter, skipped) | |
| `fc.weight`, `fc.bias` | `predictions` | weight transposed |
| `aux1.conv`, `.fc1`, `.fc2` | `aux1_proj`, `aux1_fc`, `aux1_predictions` | fc1: see below |

torchvision flattens the aux head's 128x4x4 map channel-major (NCHW), Keras height-major
(NHWC), so `aux?.fc1.weight`'s 2048 input columns are permuted, not just transposed.

`port_state_dict` needs a built model, never the builder: `weights.convert` builds one.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from keras_googlenet import spec as spec_lib
from keras_googlenet.model_card import OUTPUT_NAME
from keras_googlenet.weights.state_dict import load_state_dict

_STEM = (("conv1", "conv1"), ("conv2", "conv2_reduce"), ("conv3", "conv2"))
# torchvision's branch modules, in Table 1's column order (`spec.WIDTH_COLUMNS`).
_BRANCHES = tuple(zip(
    ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1"),
    spec_lib.WIDTH_COLUMNS, strict=True))
_BN_TENSORS = (  # torchvision name -> index in keras BatchNormalization.weights
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)
_IGNORED = ("num_batches_tracked",)  # BN's training step counter: nothing to port
_HEADS = tuple(spec_lib.AUX_TAPS)  # ("aux1", "aux2"), torchvision's names too


@dataclasses.dataclass
class PortReport:
    """What a port did, tensor by tensor.

    Attributes:
        assigned: Keras variable path -> the torchvision tensor it came from.
        consumed: the torchvision tensors that were ported, in order.
        skipped: torchvision tensor -> why it was not ported (BN step counters, heads the
            Keras model does not have). Anything else left over is an error, never skipped.
    """

    assigned: dict
    consumed: list
    skipped: dict

    def summary(self):
        reasons = {}
        for reason in self.skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        parts = [f"{len(self.consumed)} tensors ported onto {len(self.assigned)} Keras weights"]
        parts += [f"{count} skipped ({reason})" for reason, count in reasons.items()]
        return "; ".join(parts)


def _conv_blocks(include_aux):
    blocks = list(_STEM)
    for block in (block for stage in spec_lib.STAGES for block in stage):
        for torch_branch, keras_branch in _BRANCHES:
            blocks.append((f"inception{block}.{torch_branch}", f"inception_{block}_{keras_branch}"))
    if include_aux:
        blocks += [(f"{head}.conv", f"{head}_proj") for head in _HEADS]
    return blocks


def _conv_to_keras(array):
    return np.transpose(array, (2, 3, 1, 0))  # OIHW -> HWIO


def _dense_to_keras(array):
    return np.transpose(array)  # (out, in) -> (in, out)


def _flattened_dense_to_keras(channels, height, width):
    """torchvision flattens NCHW (c, h, w); Keras flattens NHWC (h, w, c)."""

    def convert(array):
        out = array.shape[0]
        return array.reshape(out, channels, height, width).transpose(2, 3, 1, 0).reshape(
            height * width * channels, out
        )

    return convert


def _keras_shape_to_torch(kind, shape):
    """The torchvision shape a Keras variable of `shape` needs (for error messages)."""
    if kind == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "dense":
        return (shape[1], shape[0])
    return tuple(shape)


def _layer_or_none(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _weight_plan(model):
    """[(torch name, keras variable, converter, kind)] for every weight of `model`."""
    has_top = _layer_or_none(model, OUTPUT_NAME) is not None
    has_aux = _layer_or_none(model, "aux1_fc") is not None
    plan = []
    for torch_prefix, keras_name in _conv_blocks(has_aux):
        conv = model.get_layer(f"{keras_name}_conv")
        bn = model.get_layer(f"{keras_name}_bn")
        plan.append((f"{torch_prefix}.conv.weight", conv.kernel, _conv_to_keras, "conv"))
        variables = dict(zip(("gamma", "beta", "moving_mean", "moving_variance"), bn.weights,
                             strict=True))
        for torch_name, keras_field in _BN_TENSORS:
            plan.append((f"{torch_prefix}.bn.{torch_name}", variables[keras_field], None, "bn"))
    if has_aux:
        for head in _HEADS:
            flat_shape = model.get_layer(f"{head}_flatten").input.shape[1:]
            height, width, channels = (int(d) for d in flat_shape)
            fc1 = model.get_layer(f"{head}_fc")
            fc2 = model.get_layer(f"{head}_predictions")
            plan += [
                (f"{head}.fc1.weight", fc1.kernel,
                 _flattened_dense_to_keras(channels, height, width), "dense"),
                (f"{head}.fc1.bias", fc1.bias, None, "bias"),
                (f"{head}.fc2.weight", fc2.kernel, _dense_to_keras, "dense"),
                (f"{head}.fc2.bias", fc2.bias, None, "bias"),
            ]
    if has_top:
        fc = model.get_layer(OUTPUT_NAME)
        plan += [
            ("fc.weight", fc.kernel, _dense_to_keras, "dense"),
            ("fc.bias", fc.bias, None, "bias"),
        ]
    return plan, has_top, has_aux


def _check_topology(model):
    conv = _layer_or_none(model, "inception_3a_5x5_conv")
    bn = _layer_or_none(model, "conv1_bn")
    if conv is None or bn is None or tuple(conv.kernel_size) != (3, 3) \
            or _layer_or_none(model, "norm1") is not None:
        raise ValueError(
            "torchvision's GoogLeNet weights fit only `GoogLeNet(variant='torchvision')` "
            f"(BatchNorm, 3x3 kernel in the '5x5' branch); model {model.name!r} is not one."
        )
    if model.get_layer("conv1_conv").kernel.shape[2] != 3:
        raise ValueError("torchvision's GoogLeNet weights need a 3-channel (RGB) input.")


def port_state_dict(model, state_dict):
    """Assign torchvision's tensors to `model` (a `variant="torchvision"` GoogLeNet).

    Every weight of `model` must be found, with the right shape, and every tensor of
    `state_dict` must be ported or be an ignorable leftover (BN's `num_batches_tracked`,
    the tensors of a head `model` was built without); otherwise a `ValueError` names the
    offending tensors and nothing is assigned.

    Returns:
        a `PortReport`.
    """
    _check_topology(model)
    state = load_state_dict(state_dict)
    plan, has_top, has_aux = _weight_plan(model)
    planned = {name for name, *_ in plan}

    missing = [name for name, *_ in plan if name not in state]
    if missing:
        aux_missing = [n for n in missing if n.startswith(tuple(_HEADS))]
        hint = ""
        if aux_missing and len(aux_missing) == len(missing):
            hint = (" The source has no auxiliary heads (saved with aux_logits=False?): "
                    "build without include_aux.")
        raise ValueError(
            f"the torchvision state dict lacks {len(missing)} tensor(s) the Keras model needs: "
            f"{_names(missing)}.{hint}"
        )

    skipped, unexpected = {}, []
    for name in state:
        if name in planned:
            continue
        prefix, _, leaf = name.rpartition(".")
        if leaf in _IGNORED and f"{prefix}.weight" in state:
            skipped[name] = "BatchNorm step counter"
        elif not has_aux and re.match(r"aux[12]\.", name):
            skipped[name] = "aux head not built; torchvision's aux heads are not pretrained"
        elif not has_top and name in ("fc.weight", "fc.bias"):
            skipped[name] = "classifier not built (include_top=False)"
        else:
            unexpected.append(name)
    if unexpected:
        raise ValueError(
            f"the torchvision state dict has {len(unexpected)} tensor(s) with no place in "
            f"GoogLeNet(variant='torchvision'): {_names(unexpected)}."
        )

    values, assigned = [], {}
    for name, variable, convert, kind in plan:
        array = np.asarray(state[name])
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"tensor {name!r} has dtype {array.dtype}; expected floating point values."
            )
        expected = tuple(int(d) for d in variable.shape)
        source_shape = _keras_shape_to_torch(kind, expected)
        if tuple(array.shape) != source_shape:
            raise ValueError(
                f"tensor {name!r} has shape {tuple(array.shape)}; Keras weight "
                f"{variable.path!r} {expected} needs {source_shape}."
            )
        array = array.astype("float32")
        if convert is not None:
            array = convert(array)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"tensor {name!r} has non-finite values.")
        values.append((variable, array))
        assigned[variable.path] = name
    if unassigned := [w.path for w in model.weights if w.path not in assigned]:
        raise ValueError(
            f"no torchvision tensor for Keras weight(s) {_names(unassigned)}: the model "
            "has layers torchvision's GoogLeNet does not."
        )
    for variable, array in values:
        variable.assign(array)
    return PortReport(
        assigned=assigned,
        consumed=[name for name, *_ in plan],
        skipped=skipped,
    )


def _names(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
