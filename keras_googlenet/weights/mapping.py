"""torchvision's state dict -> `GoogLeNet(variant="torchvision")`: the mapping (the table in
docs/weights.md) and the port onto a built model; and the copy between Keras models by name."""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np

from keras_googlenet import spec as spec_lib
from keras_googlenet.model_card import OUTPUT_NAME, find_layer, infer_variant
from keras_googlenet.weights.state_dict import load_state_dict

__all__ = ["PortReport", "copy_weights_by_name", "port_state_dict"]

_STEM = (("conv1", "conv1"), ("conv2", "conv2_reduce"), ("conv3", "conv2"))
# torchvision's branch modules, in Table 1's column order (`spec.WIDTH_COLUMNS`).
_BRANCHES = tuple(zip(
    ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1"),
    spec_lib.WIDTH_COLUMNS, strict=True))
# In the order of Keras' BatchNormalization.weights: gamma, beta, moving mean and variance.
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
_HEADS = tuple(spec_lib.AUX_TAPS)  # ("aux1", "aux2"), torchvision's names too
# The axes of a Keras kernel in torchvision's order: OIHW from HWIO, (out, in) from (in, out).
_CONV_AXES, _DENSE_AXES = (3, 2, 0, 1), (1, 0)


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
        """One line: how many tensors were ported, and how many skipped for each reason."""
        reasons = collections.Counter(self.skipped.values()).items()
        ported = f"{len(self.consumed)} tensors ported onto {len(self.assigned)} Keras weights"
        return "; ".join([ported, *(f"{count} skipped ({reason})" for reason, count in reasons)])


def _conv_blocks(include_aux):
    inception = [(f"inception{block}.{torch_branch}", f"inception_{block}_{keras_branch}")
                 for stage in spec_lib.STAGES for block in stage
                 for torch_branch, keras_branch in _BRANCHES]
    return [*_STEM, *inception, *((f"{h}.conv", f"{h}_proj") for h in _HEADS if include_aux)]


def _flattened_dense_to_keras(channels, height, width):
    """torchvision flattens NCHW (c, h, w); Keras flattens NHWC (h, w, c)."""
    return lambda array: array.reshape(-1, channels, height, width).transpose(2, 3, 1, 0) \
        .reshape(height * width * channels, -1)


def _dense(torch_prefix, layer, convert=None):
    return [(f"{torch_prefix}.weight", layer.kernel, _DENSE_AXES, convert),
            (f"{torch_prefix}.bias", layer.bias, None, None)]


def _weight_plan(model):
    """[(torch name, Keras variable, its `_CONV_AXES`/`_DENSE_AXES` or None, a conversion
    other than that transpose or None)] for every weight of `model`."""
    has_top = find_layer(model, OUTPUT_NAME) is not None
    has_aux = find_layer(model, "aux1_fc") is not None
    plan = []
    for torch_prefix, keras_name in _conv_blocks(has_aux):
        conv = model.get_layer(f"{keras_name}_conv")
        plan.append((f"{torch_prefix}.conv.weight", conv.kernel, _CONV_AXES, None))
        plan += [(f"{torch_prefix}.bn.{torch_name}", variable, None, None) for torch_name, variable
                 in zip(_BN_TENSORS, model.get_layer(f"{keras_name}_bn").weights, strict=True)]
    for head in _HEADS if has_aux else ():
        height, width, channels = model.get_layer(f"{head}_flatten").input.shape[1:]
        plan += _dense(f"{head}.fc1", model.get_layer(f"{head}_fc"),
                       _flattened_dense_to_keras(int(channels), int(height), int(width)))
        plan += _dense(f"{head}.fc2", model.get_layer(f"{head}_predictions"))
    if has_top:
        plan += _dense("fc", model.get_layer(OUTPUT_NAME))
    return plan, has_top, has_aux


def _check_topology(model):
    if infer_variant(model) != "torchvision":
        raise ValueError("torchvision's GoogLeNet weights fit only "
                         "`GoogLeNet(variant='torchvision')` (BatchNorm, 3x3 kernel in the '5x5' "
                         f"branch); model {model.name!r} is not one.")
    if model.get_layer("conv1_conv").kernel.shape[2] != 3:
        raise ValueError("torchvision's GoogLeNet weights need a 3-channel (RGB) input.")


def port_state_dict(model, state_dict):
    """Assign torchvision's tensors to `model` (a `variant="torchvision"` GoogLeNet), strictly
    (docs/weights.md): a weight without a tensor of its shape, or a tensor with no place (BN
    step counters and unbuilt heads are skipped), is a `ValueError` naming it, before any write.

    Returns:
        a `PortReport`.
    """
    _check_topology(model)
    state = load_state_dict(state_dict)
    plan, has_top, has_aux = _weight_plan(model)
    _check_none_missing(plan, state)
    skipped = _leftovers(state, {name for name, *_ in plan}, has_top, has_aux)
    values = [(variable, _keras_value(name, state[name], variable, axes, convert))
              for name, variable, axes, convert in plan]
    assigned = {variable.path: name for (name, variable, *_) in plan}
    if unassigned := [w.path for w in model.weights if w.path not in assigned]:
        raise ValueError(f"no torchvision tensor for Keras weight(s) {_names(unassigned)}: the "
                         "model has layers torchvision's GoogLeNet does not.")
    for variable, array in values:
        variable.assign(array)
    return PortReport(assigned=assigned, consumed=[name for name, *_ in plan], skipped=skipped)


def copy_weights_by_name(source, layers):
    """Give each weighted layer of `layers` the weights of `source`'s layer of that name if
    their shapes match. Returns `(not_copied, unused)`: the names of the layers left as they
    were and of `source`'s weighted layers none took (what that means is the caller's call)."""
    unused = {layer.name: layer for layer in source.layers if layer.weights}
    not_copied = []
    for layer in (layer for layer in layers if layer.weights):
        origin = unused.pop(layer.name, None)
        shapes = [tuple(weight.shape) for weight in layer.weights]
        if origin is not None and [tuple(w.shape) for w in origin.weights] == shapes:
            layer.set_weights(origin.get_weights())
        else:
            not_copied.append(layer.name)
    return not_copied, sorted(unused)


def _check_none_missing(plan, state):
    if missing := [name for name, *_ in plan if name not in state]:
        hint = (" The source has no auxiliary heads (saved with aux_logits=False?): build "
                "without include_aux.") if all(n.startswith(_HEADS) for n in missing) else ""
        raise ValueError(f"the torchvision state dict lacks {len(missing)} tensor(s) the Keras "
                         f"model needs: {_names(missing)}.{hint}")


def _leftovers(state, planned, has_top, has_aux):
    """`{tensor: why it is skipped}` for the tensors not ported; `ValueError` for any that
    has no place in the model."""
    skipped, unexpected = {}, []
    for name in state:
        if name in planned:
            continue
        prefix, _, leaf = name.rpartition(".")
        if leaf == "num_batches_tracked" and f"{prefix}.weight" in state:  # nothing to port
            skipped[name] = "BatchNorm step counter"
        elif not has_aux and re.match(r"aux[12]\.", name):
            skipped[name] = "aux head not built; torchvision's aux heads are not pretrained"
        elif not has_top and name in ("fc.weight", "fc.bias"):
            skipped[name] = "classifier not built (include_top=False)"
        else:
            unexpected.append(name)
    if unexpected:
        raise ValueError(f"the torchvision state dict has {len(unexpected)} tensor(s) with no "
                         f"place in GoogLeNet(variant='torchvision'): {_names(unexpected)}.")
    return skipped


def _keras_value(name, tensor, variable, axes, convert):
    """torchvision tensor `name` as the float32 value of Keras `variable`, checked."""
    array = np.asarray(tensor)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"tensor {name!r} has dtype {array.dtype}; expected floating point "
                         "values.")
    expected = tuple(int(d) for d in variable.shape)
    source_shape = expected if axes is None else tuple(expected[axis] for axis in axes)
    if tuple(array.shape) != source_shape:
        raise ValueError(f"tensor {name!r} has shape {tuple(array.shape)}; Keras weight "
                         f"{variable.path!r} {expected} needs {source_shape}.")
    array = array.astype("float32")
    if convert is not None:
        array = convert(array)
    elif axes is not None:
        array = np.transpose(array, np.argsort(axes))  # torchvision's layout -> Keras'
    if not np.all(np.isfinite(array)):
        raise ValueError(f"tensor {name!r} has non-finite values.")
    return array


def _names(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
