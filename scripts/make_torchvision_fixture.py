"""Make the torchvision-parity fixture of `tests/test_weights.py` (needs PyTorch).

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy
    /tmp/torchvenv/bin/python scripts/make_torchvision_fixture.py [--out-dir tests/fixtures]

Design. The full GoogLeNet state dict (13.0 M values with the aux heads) would be ~26 MB
even as float16, so it is not stored. Instead every tensor is a pure function of its name
and a seed, drawn with NumPy's legacy `RandomState` (whose streams NumPy guarantees never
to change), so the test regenerates the exact float32 values without PyTorch:

1. torchvision builds `GoogLeNet(aux_logits=True, transform_input=False)`; its
   `state_dict()` names, shapes and dtypes become the manifest (so the tensor list is
   torchvision's, not ours);
2. each tensor is filled by `synthetic_tensor` (He-scaled conv kernels, zero-sum He-scaled
   linear rows, BN with gamma ~U(0.8, 1.3), running_var ~U(0.5, 2), ...) and loaded with
   `strict=True`;
3. a few random uint8 RGB images (smooth to fine-grained) are scaled to [-1, 1]
   (`x / 127.5 - 1`, what `preprocess_input(x, variant="torchvision")` does) and
   torchvision computes, in eval mode
   and float32, the main logits and both aux heads' logits (calling `aux1`/`aux2` on the
   inception_4a/4d outputs, since torchvision runs them only in training mode).

`transform_input=False` with [-1, 1] inputs is what the ported Keras model computes;
torchvision's pretrained model uses `transform_input=True` on ImageNet-normalised inputs,
which yields the same [-1, 1] tensor. The script measures that equivalence too and
records it in the manifest (`transform_input_max_abs_diff`).

Output: `torchvision_googlenet.json` (manifest) and `torchvision_googlenet.npz` (images,
logits, top-5). Only this script needs PyTorch; the generators are plain NumPy, in
`tests/_synthetic_torchvision.py`, which the tests import too (loaded here by path, so the
PyTorch environment needs neither Keras nor this package).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

import numpy as np


def _load_synthetic():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                        "_synthetic_torchvision.py")
    spec = importlib.util.spec_from_file_location("_synthetic_torchvision", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic = _load_synthetic()
IMAGE_SIZE, SEED = synthetic.IMAGE_SIZE, synthetic.SEED

FIXTURE_NAME = "torchvision_googlenet"
TOP_K = 5


# --------------------------------------------------------------------------- needs PyTorch


def _torchvision_outputs(model, x_nhwc):
    import torch

    features = {}
    hooks = [
        getattr(model, block).register_forward_hook(
            lambda _m, _i, out, key=key: features.__setitem__(key, out)
        )
        for block, key in (("inception4a", "aux1"), ("inception4d", "aux2"))
    ]
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
        logits = model(x).numpy()
        aux1 = model.aux1(features["aux1"]).numpy()
        aux2 = model.aux2(features["aux2"]).numpy()
    for hook in hooks:
        hook.remove()
    return logits, aux1, aux2


def _top_k_gap(logits, k=TOP_K):
    ordered = np.sort(logits, axis=-1)[:, ::-1]
    return float(np.min(np.diff(-ordered[:, :k + 1], axis=-1)))


def build_fixture(out_dir, seed=SEED):
    import torch
    import torchvision
    from torchvision.models import GoogLeNet

    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = GoogLeNet(num_classes=1000, aux_logits=True, transform_input=False,
                      init_weights=False).eval()
    tensors = [
        {"name": name, "shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
        for name, value in model.state_dict().items()
    ]
    manifest = {
        "description": "torchvision GoogLeNet parity fixture; tensors regenerate with "
                       "tests/_synthetic_torchvision.py: synthetic_state_dict",
        "seed": seed,
        "image_size": IMAGE_SIZE,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "torchvision_model": "GoogLeNet(num_classes=1000, aux_logits=True, "
                             "transform_input=False, init_weights=False).eval()",
        "tensors": tensors,
    }
    state = synthetic.synthetic_state_dict(manifest)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)

    # Pick input seeds whose top-5 are well separated, so index comparisons are stable.
    for image_seed in range(seed, seed + 100):
        images = synthetic.fixture_images(image_seed)
        x = synthetic.to_model_input(images)
        logits, aux1, aux2 = _torchvision_outputs(model, x)
        gaps = [_top_k_gap(y) for y in (logits, aux1, aux2)]
        top5 = {tuple(row) for row in np.argsort(-logits, axis=-1)[:, :TOP_K]}
        if min(gaps) > 1e-3 and len(top5) == len(images):
            break
    else:
        raise RuntimeError("no input seed gave well-separated top-5 logits")

    # torchvision's pretrained path: transform_input=True on ImageNet-normalised input.
    pretrained_style = GoogLeNet(num_classes=1000, aux_logits=True, transform_input=True,
                                 init_weights=False).eval()
    pretrained_style.load_state_dict(model.state_dict(), strict=True)
    mean = np.array([0.485, 0.456, 0.406], "float32")
    std = np.array([0.229, 0.224, 0.225], "float32")
    normalised = ((images.astype("float32") / 255.0 - mean) / std).astype("float32")
    with torch.no_grad():
        folded = pretrained_style(
            torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2)))
        ).numpy()

    manifest.update({
        "image_seed": image_seed,
        "num_images": int(len(images)),
        "logit_std": float(logits.std()),
        "top5_min_gap": min(gaps),
        "transform_input_max_abs_diff": float(np.abs(folded - logits).max()),
        "num_tensors": len(tensors),
        "num_values": int(sum(int(np.prod(t["shape"])) for t in tensors)),
        "state_sha256": synthetic.state_dict_digest(
            {k: v.numpy() for k, v in model.state_dict().items()}
        ),
    })
    os.makedirs(out_dir, exist_ok=True)
    npz_path = os.path.join(out_dir, FIXTURE_NAME + ".npz")
    np.savez_compressed(
        npz_path,
        images=images,
        logits=logits.astype("float32"),
        aux1_logits=aux1.astype("float32"),
        aux2_logits=aux2.astype("float32"),
        top5=np.argsort(-logits, axis=-1)[:, :TOP_K].astype("int32"),
    )
    json_path = os.path.join(out_dir, FIXTURE_NAME + ".json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return npz_path, json_path, manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                               "fixtures")
    parser.add_argument("--out-dir", default=os.path.normpath(default_dir))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    npz_path, json_path, manifest = build_fixture(args.out_dir, args.seed)
    for path in (npz_path, json_path):
        print(f"wrote {path} ({os.path.getsize(path) / 1e3:.1f} kB)")
    print(f"{manifest['num_tensors']} tensors, {manifest['num_values']:,} values; logit std "
          f"{manifest['logit_std']:.3f}; top-5 min gap {manifest['top5_min_gap']:.4f}; "
          f"transform_input equivalence max |diff| {manifest['transform_input_max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
