"""Port torchvision's GoogLeNet weights onto the `torchvision` variant.

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

Input: a `.pth` state dict (reading it needs PyTorch, the optional `torch` extra) or a
NumPy `.npz` of the same tensors under the same names (no PyTorch needed; float16 is fine).

Preprocessing: torchvision's pretrained GoogLeNet has `transform_input=True`, which turns
ImageNet-normalised input into `(x / 255 - 0.5) / 0.5`, i.e. [-1, 1], before `conv1`. The
ported Keras model takes that [-1, 1] tensor directly: use
`preprocess_input(x, variant="torchvision")` (Keras mode `"tf"`, `x / 127.5 - 1`).

The aux heads of IMAGENET1K_V1 are NOT pretrained (torchvision warns so too): they are
ported only with `include_aux=True`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
import warnings
from collections.abc import Mapping

import numpy as np

TORCHVISION_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"
TORCHVISION_FILE = "googlenet-1378be20.pth"
TORCHVISION_SHA256_PREFIX = "1378be20"  # torchvision's file names carry their sha256 prefix
TORCHVISION_WEIGHTS_NAME = "torchvision GoogLeNet_Weights.IMAGENET1K_V1"
TORCHVISION_METRICS = {"ImageNet-1K": {"acc@1": 69.778, "acc@5": 89.530}}
# The converted main-head file `GoogLeNet(weights="imagenet")` looks for in `cache_dir()`.
IMAGENET_WEIGHTS_FILE = "googlenet_torchvision_imagenet1k_v1.weights.h5"
CACHE_ENV = "KERAS_GOOGLENET_HOME"
OFFLINE_ENV = "KERAS_GOOGLENET_OFFLINE"
STATE_DICT_SUFFIXES = (".pth", ".pt", ".npz")
CONVERT_COMMAND = "python -m keras_googlenet convert-torchvision"

_STEM = (("conv1", "conv1"), ("conv2", "conv2_reduce"), ("conv3", "conv2"))
_BRANCHES = (
    ("branch1", "1x1"),
    ("branch2.0", "3x3_reduce"),
    ("branch2.1", "3x3"),
    ("branch3.0", "5x5_reduce"),
    ("branch3.1", "5x5"),
    ("branch4.1", "pool_proj"),
)
_BN_TENSORS = (  # torchvision name -> index in keras BatchNormalization.weights
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)
_IGNORED = ("num_batches_tracked",)  # BN's training step counter: nothing to port
_HEADS = ("aux1", "aux2")


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


# --------------------------------------------------------------------------- mapping


def _conv_blocks(include_aux):
    blocks = list(_STEM)
    for stage in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        for torch_branch, keras_branch in _BRANCHES:
            blocks.append((f"inception{stage}.{torch_branch}", f"inception_{stage}_{keras_branch}"))
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
    has_top = _layer_or_none(model, "predictions") is not None
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
        fc = model.get_layer("predictions")
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


# --------------------------------------------------------------------------- reading


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()  # bfloat16/float16 -> float32; numpy has no bfloat16
        return value.numpy()
    return np.asarray(value)


def load_state_dict(src):
    """torchvision's tensors as `{name: numpy array}` from a `.pth`, an `.npz` or a mapping.

    A `.pth` needs PyTorch (`pip install 'keras-googlenet[torch]'`); an `.npz` does not.
    Checkpoints wrapping the state dict (`{"state_dict": ...}` or `{"model": ...}`) and
    `DataParallel`'s `module.` prefix are unwrapped.
    """
    if isinstance(src, Mapping):
        state = dict(src)
    elif isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"torchvision state dict not found: {path!r}")
        lowered = path.lower()
        if lowered.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                state = {name: data[name] for name in data.files}
        elif lowered.endswith((".pth", ".pt")):
            state = _torch_load(path)
        else:
            raise ValueError(
                f"cannot read {path!r}: expected a torchvision state dict as '.pth'/'.pt' "
                "(needs PyTorch) or a NumPy '.npz' of the same tensors."
            )
    else:
        raise ValueError(
            "`src` must be the path of a '.pth'/'.pt' or '.npz' state dict, or a mapping of "
            f"tensor names to arrays; received {type(src).__name__}."
        )
    for wrapper in ("state_dict", "model"):  # a training checkpoint around the state dict
        if isinstance(state.get(wrapper), Mapping):
            state = dict(state[wrapper])
            break
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    return {str(name): _to_numpy(value) for name, value in state.items()}


def _torch_load(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading {os.path.basename(path)!r} needs PyTorch, an optional dependency: "
            "`pip install 'keras-googlenet[torch]'`. Or, where PyTorch is installed, save the "
            f"tensors as NumPy: `{CONVERT_COMMAND} {os.path.basename(path)} "
            f"{os.path.splitext(os.path.basename(path))[0]}.npz`, and convert the '.npz' here."
        ) from error
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{path!r} holds a {type(state).__name__}, not a state dict; save "
            "`model.state_dict()` rather than the module."
        )
    return state


def save_state_dict_npz(state_dict, path, dtype=None):
    """Write a state dict as a NumPy `.npz` that `from_torchvision` reads without PyTorch."""
    arrays = {}
    for name, value in load_state_dict(state_dict).items():
        if dtype is not None and np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
        arrays[name] = value
    path = os.fspath(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# --------------------------------------------------------------------------- porting


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


def from_torchvision(
    src,
    include_aux=False,
    *,
    include_top=True,
    input_shape=None,
    pooling=None,
    classifier_activation="softmax",
    name="googlenet",
    return_report=False,
):
    """A `GoogLeNet(variant="torchvision")` with torchvision's GoogLeNet weights.

    Args:
        src: torchvision's state dict: a `.pth`/`.pt` file (needs PyTorch), a NumPy `.npz`
            of the same tensor names, or a mapping `{name: array or tensor}`.
        include_aux: also port the two auxiliary heads (the source must have them).
            torchvision's IMAGENET1K_V1 aux heads are NOT pretrained: train them first.
        include_top: build and port the classifier (`fc`); its class count comes from
            `fc.weight`.
        input_shape: as in `GoogLeNet` (default 224x224x3 with the top). Parity with
            torchvision's ceil-mode pooling holds for sides that are multiples of 32.
        pooling: as in `GoogLeNet`, with `include_top=False`.
        classifier_activation: `"softmax"` (probabilities) or `None` (logits, as
            torchvision returns).
        name: the model's name.
        return_report: also return the `PortReport`.

    Expects inputs from `preprocess_input(x, variant="torchvision")` ([-1, 1]): torchvision's
    `transform_input=True` is folded into that scaling.

    Returns:
        the Keras model, or `(model, report)` with `return_report=True`.
    """
    from keras_googlenet.googlenet import GoogLeNet

    state = load_state_dict(src)
    classes = 1000
    if include_top:
        if "fc.weight" not in state:
            raise ValueError("the torchvision state dict lacks tensor 'fc.weight' (the "
                             "classifier); pass include_top=False for the backbone only.")
        classes = int(np.shape(state["fc.weight"])[0])
    model = GoogLeNet(
        include_top=include_top,
        weights=None,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        include_aux=include_aux,
        variant="torchvision",
        name=name,
    )
    report = port_state_dict(model, state)
    return (model, report) if return_report else model


# --------------------------------------------------------------------------- conversion


def convert_torchvision(src, out, include_aux=False, input_size=224):
    """Convert torchvision's weights into a file; returns `(out, report)`.

    `out` ending in `.weights.h5`: the weights of `GoogLeNet(variant="torchvision",
    include_aux=include_aux)` (load them with `weights=out`); `.keras`: the whole inference
    model with a model card `<out>.json` (ImageNet labels, preprocessing) for
    `googlenet-predict`; `.npz`: the state dict as NumPy arrays, readable without PyTorch.
    """
    out = os.fspath(out)
    lowered = out.lower()
    if lowered.endswith(".npz"):
        state = load_state_dict(src)
        save_state_dict_npz(state, out)
        return out, None
    if not lowered.endswith((".weights.h5", ".keras")):
        raise ValueError(
            f"output {out!r} must end in '.weights.h5' (weights), '.keras' (model + model "
            "card) or '.npz' (the state dict as NumPy arrays)."
        )
    is_keras = lowered.endswith(".keras")
    if is_keras and include_aux:
        raise ValueError("a '.keras' output is the deployable main-head model; drop --aux.")
    model, report = from_torchvision(
        src,
        include_aux=include_aux,
        input_shape=(input_size, input_size, 3),
        return_report=True,
    )
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    # Write next to the target and rename, so a crash never leaves a half-written file.
    suffix = ".keras" if is_keras else ".weights.h5"
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=directory)
    os.close(fd)
    try:
        if is_keras:
            model.save(tmp)
        else:
            model.save_weights(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if is_keras:
        write_model_card(model, out, src)
    return out, report


def write_model_card(model, path, src=None):
    """Write `<path>.json`: the export model card plus ImageNet labels and the weights' origin."""
    import json

    from keras_googlenet.export import describe_source
    from keras_googlenet.preprocessing import imagenet_class_index
    from keras_googlenet.runtime import card_path_for

    card = describe_source(None, model)
    card["source"]["path"] = os.path.abspath(path)
    if card["model"]["classes"] == 1000:
        index = imagenet_class_index()
        card["labels"] = [index[i][1] for i in range(1000)]
    card["source"]["weights"] = {
        "origin": TORCHVISION_WEIGHTS_NAME,
        "url": TORCHVISION_URL,
        "file": os.path.basename(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else None,
        "metrics": TORCHVISION_METRICS,
        "preprocessing_note": "torchvision's transform_input=True is folded into the [-1, 1] "
        "input: x / 127.5 - 1 (preprocess_input(x, variant='torchvision')).",
    }
    card_path = card_path_for(path)
    with open(card_path, "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2)
    return card_path


# --------------------------------------------------------------------------- weights="imagenet"


def cache_dir():
    """Where `weights="imagenet"` looks: `$KERAS_GOOGLENET_HOME`, else `$KERAS_HOME/models`,
    else `~/.keras/models` (keras.applications' cache)."""
    if os.environ.get(CACHE_ENV):
        return os.path.expanduser(os.environ[CACHE_ENV])
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "models")


def imagenet_weights_path():
    """The converted weights `GoogLeNet(variant="torchvision", weights="imagenet")` loads."""
    return os.path.join(cache_dir(), IMAGENET_WEIGHTS_FILE)


def missing_weights_message(path=None):
    path = path or imagenet_weights_path()
    return (
        f"ImageNet weights for GoogLeNet(variant='torchvision') are not in the cache: "
        f"{path!r} does not exist (cache directory: ${CACHE_ENV}, else $KERAS_HOME/models, "
        "else ~/.keras/models). Convert torchvision's IMAGENET1K_V1 weights once: download "
        f"{TORCHVISION_URL} and run `{CONVERT_COMMAND} {TORCHVISION_FILE} {path}` "
        "(reading a .pth needs `pip install 'keras-googlenet[torch]'`; an .npz of the same "
        f"tensors does not). Putting {TORCHVISION_FILE} (or "
        f"{TORCHVISION_FILE[:-4]}.npz) in the cache directory also works: it is converted "
        "on first use."
    )


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _download(url, dest, sha256_prefix=TORCHVISION_SHA256_PREFIX, timeout=60):
    """Download `url` to `dest`, checking torchvision's sha256 prefix."""
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".part", dir=directory)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
        if not digest.hexdigest().startswith(sha256_prefix):
            raise ValueError(
                f"downloaded {url} has sha256 {digest.hexdigest()[:16]}..., expected a hash "
                f"starting {sha256_prefix}."
            )
        shutil.move(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def ensure_imagenet_weights(download=None):
    """The path of the converted ImageNet weights, converting or downloading if needed.

    Order: the converted file in `cache_dir()`; else `googlenet-1378be20.npz` or `.pth` in
    the cache directory, converted there; else (PyTorch installed, a network, and
    `$KERAS_GOOGLENET_OFFLINE` unset) torchvision's `.pth` downloaded and converted. Raises
    a `ValueError` naming the conversion command otherwise.
    """
    path = imagenet_weights_path()
    if os.path.isfile(path):
        return path
    directory = cache_dir()
    npz = os.path.join(directory, TORCHVISION_FILE[:-4] + ".npz")
    pth = os.path.join(directory, TORCHVISION_FILE)
    for candidate in (npz, pth):
        if os.path.isfile(candidate) and (candidate == npz or _torch_available()):
            convert_torchvision(candidate, path)
            return path
    if download is None:
        download = not os.environ.get(OFFLINE_ENV) and _torch_available()
    if download:
        try:
            _download(TORCHVISION_URL, pth)
        except OSError as error:  # no network, proxy, disk: fall through to the help
            raise ValueError(f"could not download {TORCHVISION_URL} ({error}). "
                             + missing_weights_message(path)) from error
        convert_torchvision(pth, path)
        return path
    if os.path.isfile(pth):
        raise ValueError(
            f"found {pth!r} but reading it needs PyTorch: `pip install "
            "'keras-googlenet[torch]'`, or put its '.npz' (converted where PyTorch is "
            f"installed) next to it. {missing_weights_message(path)}"
        )
    raise ValueError(missing_weights_message(path))


def load_imagenet_weights(model, variant, include_top, classes, widths=None,
                          width_multiplier=1.0):
    """Load the ported ImageNet weights into a freshly built `GoogLeNet` (by layer name).

    Called by `GoogLeNet(weights="imagenet")`. The aux heads (not pretrained anywhere) keep
    their random initialization, with a warning.
    """
    from keras_googlenet.googlenet import IMAGENET_WEIGHTS_HELP, GoogLeNet
    from keras_googlenet.layers import load_weights

    if variant != "torchvision":
        raise ValueError(
            f"`weights='imagenet'` needs variant='torchvision'; received variant={variant!r}. "
            + IMAGENET_WEIGHTS_HELP
        )
    if widths is not None or width_multiplier != 1.0:
        raise ValueError(
            "`weights='imagenet'` needs the standard widths (widths=None, "
            f"width_multiplier=1.0); received widths={widths!r}, "
            f"width_multiplier={width_multiplier!r}."
        )
    if include_top and classes != 1000:
        raise ValueError(
            "`weights='imagenet'` with include_top=True needs classes=1000; received "
            f"classes={classes!r}. Use include_top=False for a backbone."
        )
    if model.get_layer("conv1_conv").kernel.shape[2] != 3:
        raise ValueError("`weights='imagenet'` needs 3 input channels (RGB).")
    path = ensure_imagenet_weights()
    if include_top and _layer_or_none(model, "aux1_fc") is None:
        try:  # the file's own structure: load directly
            load_weights(model, path)
            return path
        except Exception:  # noqa: BLE001 - explained by the reference load below
            pass
    reference = GoogLeNet(variant="torchvision", classifier_activation=None,
                          input_shape=(224, 224, 3))
    try:
        load_weights(reference, path)
    except Exception as error:
        raise ValueError(
            f"{path!r} is not a converted main-head GoogLeNet(variant='torchvision') weights "
            f"file ({error}). Delete it and rerun `{CONVERT_COMMAND} {TORCHVISION_FILE} {path}`."
        ) from error
    untrained = []
    for layer in model.layers:
        if not layer.weights:
            continue
        source = _layer_or_none(reference, layer.name)
        if source is None:
            untrained.append(layer.name)
            continue
        layer.set_weights(source.get_weights())
    if untrained:
        warnings.warn(
            "The auxiliary heads have no ImageNet weights (torchvision's are not pretrained "
            f"either): {', '.join(untrained)} keep their random initialization; train them.",
            stacklevel=3,
        )
    return path
