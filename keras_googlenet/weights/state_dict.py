"""torchvision state dicts in and out: `.pth` (needs PyTorch), NumPy `.npz`, or a mapping."""

import os
import zipfile
from collections.abc import Mapping

import numpy as np

from keras_googlenet.publish import atomic_path

__all__ = ["CONVERT_COMMAND", "load_state_dict", "save_state_dict_npz"]

CONVERT_COMMAND = "python -m keras_googlenet convert-torchvision"


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()  # bfloat16/float16 -> float32; numpy has no bfloat16
        return value.numpy()
    return np.asarray(value)


def load_state_dict(src):
    """torchvision's tensors as `{name: numpy array}` from a `.pth` (needs PyTorch), an
    `.npz` or a mapping; wrapping checkpoints and `DataParallel`'s prefix are unwrapped."""
    if isinstance(src, Mapping):
        state = dict(src)
    elif isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"torchvision state dict not found: {path!r}")
        lowered = path.lower()
        if lowered.endswith(".npz"):
            state = _npz_load(path)
        elif lowered.endswith((".pth", ".pt")):
            state = _torch_load(path)
        else:
            raise ValueError(f"cannot read {path!r}: expected a torchvision state dict as "
                             "'.pth'/'.pt' (needs PyTorch) or a NumPy '.npz' of the same tensors.")
    else:
        raise ValueError("`src` must be the path of a '.pth'/'.pt' or '.npz' state dict, or a "
                         f"mapping of tensor names to arrays; received {type(src).__name__}.")
    for wrapper in ("state_dict", "model"):  # a training checkpoint around the state dict
        if isinstance(state.get(wrapper), Mapping):
            state = dict(state[wrapper])
            break
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    return {str(name): _to_numpy(value) for name, value in state.items()}


def _npz_load(path):
    """The arrays of an `.npz`, never unpickled: a file that is not an archive of plain
    arrays is refused by name (NumPy's own message would suggest loading it unsafely)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(
            f"{path!r} is not a NumPy '.npz' state dict of plain arrays ({type(error).__name__} "
            f"while reading it): write one with `{CONVERT_COMMAND} SRC.pth OUT.npz` where "
            "PyTorch is installed.") from None


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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ImportError):  # permissions and the like: the system's own words
        raise
    except Exception as error:  # noqa: BLE001 - pickle, zip and torch errors alike
        # Not torch's message: it suggests `weights_only=False`, which runs the file's code.
        raise ValueError(
            f"{path!r} is not a PyTorch state dict that loads with weights only "
            f"({type(error).__name__}): give torchvision's googlenet .pth (tensors saved with "
            "`torch.save(model.state_dict(), path)`).") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state dict; save "
                         "`model.state_dict()` rather than the module.")
    return state


def save_state_dict_npz(state_dict, path):
    """Write a state dict as a NumPy `.npz` that `from_torchvision` reads without PyTorch."""
    arrays = load_state_dict(state_dict)
    path = os.fspath(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path
