"""A deterministic stand-in for torchvision's GoogLeNet weights, in plain NumPy (test helper).

The torchvision-parity fixture (`tests/fixtures/torchvision_googlenet.*`, made by
`scripts/make_torchvision_fixture.py` where PyTorch is installed) stores torchvision's
state-dict manifest and the logits torchvision computed, not the 13 M weights (~26 MB even
as float16). Every tensor is instead a pure function of its name and a seed, drawn from
NumPy's legacy `RandomState`, whose streams NumPy guarantees never to change (NEP 19), so
the tests and the fixture maker regenerate the same float32 values bit for bit. Imported by
`tests/test_weights.py`, `tests/_backend_check.py` and, by path, the fixture maker; it needs
only NumPy, so it runs in the maker's PyTorch-only environment too.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

SEED = 20151  # any fixed int; part of the manifest
IMAGE_SIZE = 224  # a multiple of 32: Keras "same" pooling == torch ceil-mode pooling
NUM_IMAGES = 3


def tensor_seed(name, seed=SEED):
    """A per-tensor seed: the tensors do not depend on each other's order or presence."""
    return (zlib.crc32(name.encode("utf-8")) ^ seed) & 0xFFFFFFFF


def synthetic_tensor(name, shape, dtype="float32", seed=SEED):
    """The deterministic, well-scaled value of torchvision tensor `name`.

    NumPy's legacy `RandomState.uniform` stream is frozen (NEP 19), so every NumPy version
    reproduces these float32 values bit for bit.
    """
    shape = tuple(int(d) for d in shape)
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=dtype)
    rng = np.random.RandomState(tensor_seed(name, seed))
    leaf = name.rsplit(".", 1)[-1]
    is_bn = ".bn." in name
    if is_bn and leaf == "weight":
        low, high = 0.8, 1.3
    elif is_bn and leaf == "bias":
        low, high = -0.1, 0.2
    elif is_bn and leaf == "running_mean":
        low, high = -0.2, 0.2
    elif is_bn and leaf == "running_var":
        low, high = 0.5, 2.0
    elif leaf == "weight" and len(shape) == 4:  # conv: He-normal std as a uniform
        fan_in = shape[1] * shape[2] * shape[3]
        bound = np.sqrt(3.0) * np.sqrt(2.0 / fan_in)
        low, high = -bound, bound
    elif leaf == "weight" and len(shape) == 2:  # linear: std sqrt(2 / fan_in), zero-sum rows
        bound = np.sqrt(3.0) * np.sqrt(2.0 / shape[1])
        weight = rng.uniform(-bound, bound, size=shape)
        # Post-ReLU features share a large positive mean; zero-sum rows keep it from
        # dominating the logits, so they depend on the image rather than on that mean.
        return (weight - weight.mean(axis=1, keepdims=True)).astype(dtype)
    elif leaf == "bias":
        low, high = -0.1, 0.1
    else:
        raise ValueError(f"no synthetic recipe for tensor {name!r} {shape}")
    return rng.uniform(low, high, size=shape).astype(dtype)


def synthetic_state_dict(manifest):
    """`{name: array}` for every tensor the manifest lists (torchvision's state_dict order)."""
    seed = manifest["seed"]
    return {
        t["name"]: synthetic_tensor(t["name"], t["shape"], t["dtype"], seed)
        for t in manifest["tensors"]
    }


def state_dict_digest(state):
    """sha256 of the tensors (names, dtypes, shapes and little-endian bytes), in order."""
    digest = hashlib.sha256()
    for name, value in state.items():
        value = np.ascontiguousarray(value)
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.astype(value.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def _interpolation_matrix(size, source):
    """(size, source) weights of linear interpolation from `source` samples to `size`."""
    positions = np.linspace(0, source - 1, size)
    lower = np.clip(np.floor(positions).astype(int), 0, source - 2)
    frac = positions - lower
    matrix = np.zeros((size, source))
    matrix[np.arange(size), lower] = 1 - frac
    matrix[np.arange(size), lower + 1] = frac
    return matrix


def _upsample(low_res, size):
    """Bilinear upsampling of an (h, w, 3) array to (size, size, 3), plain NumPy."""
    rows = _interpolation_matrix(size, low_res.shape[0])
    cols = _interpolation_matrix(size, low_res.shape[1])
    return np.einsum("yh,hwc,xw->yxc", rows, low_res, cols)


def fixture_images(seed, count=NUM_IMAGES, size=IMAGE_SIZE):
    """Random RGB uint8 images, smooth to fine-grained (smooth ones compress well)."""
    rng = np.random.RandomState(seed)
    images = []
    for index in range(count):
        grid = (4, 16, 56)[index % 3] + index // 3  # coarse to fine structure
        image = _upsample(rng.uniform(0, 255, size=(grid, grid, 3)), size)
        images.append(np.clip(np.round(image), 0, 255).astype("uint8"))
    return np.stack(images)


def to_model_input(images):
    """uint8 RGB -> float32 [-1, 1], exactly as `preprocess_input(x, variant="torchvision")`."""
    x = images.astype("float32")
    x /= 127.5
    x -= 1.0
    return x
