"""Port torchvision's GoogLeNet weights onto the `torchvision` variant.

torchvision's `GoogLeNet_Weights.IMAGENET1K_V1` (`googlenet-1378be20.pth`, acc@1 69.778,
acc@5 89.530) has exactly the topology of `GoogLeNet(variant="torchvision")`; `mapping`
says tensor by tensor where each of its weights goes.

Input: a `.pth` state dict (reading it needs PyTorch, the optional `torch` extra) or a
NumPy `.npz` of the same tensors under the same names (no PyTorch needed; float16 is fine).

Preprocessing: torchvision's pretrained GoogLeNet has `transform_input=True`, which turns
ImageNet-normalised input into `(x / 255 - 0.5) / 0.5`, i.e. [-1, 1], before `conv1`. The
ported Keras model takes that [-1, 1] tensor directly: use
`preprocess_input(x, variant="torchvision")` (Keras mode `"tf"`, `x / 127.5 - 1`).

The aux heads of IMAGENET1K_V1 are NOT pretrained (torchvision warns so too): they are
ported only with `include_aux=True`.

One module per role; only `convert` imports the builder, and the builder imports only
`imagenet` (inside `GoogLeNet(weights="imagenet")`):

- `state_dict`: reading and writing state dicts (`.pth`, `.npz`, mappings);
- `mapping`: torchvision names -> Keras weights, and `port_state_dict` onto a built model;
- `imagenet`: the `weights="imagenet"` cache (paths, download, conversion on first use);
- `convert`: `from_torchvision`, `convert_torchvision` and the model card of a `.keras`.
"""

from keras_googlenet.weights.convert import (
    check_output,
    convert_torchvision,
    ensure_imagenet_weights,
    from_torchvision,
    imagenet_reference_model,
    load_imagenet_weights,
    write_model_card,
)
from keras_googlenet.weights.imagenet import (
    CACHE_ENV,
    IMAGENET_WEIGHTS_FILE,
    IMAGENET_WEIGHTS_HELP,
    OFFLINE_ENV,
    TORCHVISION_FILE,
    TORCHVISION_METRICS,
    TORCHVISION_SHA256_PREFIX,
    TORCHVISION_URL,
    TORCHVISION_WEIGHTS_NAME,
    cache_dir,
    cache_file,
    imagenet_weights_path,
    missing_weights_message,
)
from keras_googlenet.weights.mapping import PortReport, port_state_dict
from keras_googlenet.weights.state_dict import (
    CONVERT_COMMAND,
    STATE_DICT_SUFFIXES,
    load_state_dict,
    save_state_dict_npz,
)

__all__ = [
    "CACHE_ENV", "CONVERT_COMMAND", "IMAGENET_WEIGHTS_FILE", "IMAGENET_WEIGHTS_HELP",
    "OFFLINE_ENV", "PortReport", "STATE_DICT_SUFFIXES", "TORCHVISION_FILE",
    "TORCHVISION_METRICS", "TORCHVISION_SHA256_PREFIX", "TORCHVISION_URL",
    "TORCHVISION_WEIGHTS_NAME", "cache_dir", "cache_file", "check_output", "convert_torchvision",
    "ensure_imagenet_weights",
    "from_torchvision", "imagenet_reference_model", "imagenet_weights_path",
    "load_imagenet_weights", "load_state_dict", "missing_weights_message", "port_state_dict",
    "save_state_dict_npz", "write_model_card",
]
