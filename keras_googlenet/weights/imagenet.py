"""`GoogLeNet(weights="imagenet")`: the cache of converted torchvision weights (docs/weights.md).
Never imports the builder: `GoogLeNet` passes `build_reference`, which builds the file's model."""

import hashlib
import importlib.util
import os
import urllib.request
import warnings

from keras_googlenet.layers import load_weights_or_explain
from keras_googlenet.model_card import find_layer
from keras_googlenet.paths import child_path
from keras_googlenet.publish import atomic_path
from keras_googlenet.weights.mapping import copy_weights_by_name, port_state_dict
from keras_googlenet.weights.state_dict import CONVERT_COMMAND

__all__ = ["CACHE_ENV", "IMAGENET_WEIGHTS_FILE", "OFFLINE_ENV", "TORCHVISION_FILE",
           "TORCHVISION_URL", "cache_dir", "cache_file", "ensure_imagenet_weights",
           "load_imagenet_weights", "torchvision_source"]

TORCHVISION_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"
TORCHVISION_FILE = "googlenet-1378be20.pth"
TORCHVISION_SHA256_PREFIX = "1378be20"  # torchvision's file names carry their sha256 prefix
# The converted main-head file `GoogLeNet(weights="imagenet")` looks for in `cache_dir()`.
IMAGENET_WEIGHTS_FILE = "googlenet_torchvision_imagenet1k_v1.weights.h5"
CACHE_ENV = "KERAS_GOOGLENET_HOME"
OFFLINE_ENV = "KERAS_GOOGLENET_OFFLINE"


def cache_dir():
    """Where `weights="imagenet"` looks: `$KERAS_GOOGLENET_HOME`, else `$KERAS_HOME/models`,
    else `~/.keras/models` (keras.applications' cache)."""
    if os.environ.get(CACHE_ENV):
        return os.path.expanduser(os.environ[CACHE_ENV])
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "models")


def cache_file(name):
    """`cache_dir()/name` to write; a `ValueError` naming the cache setting if the cache
    directory is a file, or `name` would leave it or is a symlink there (a write replaces
    the link, never the file it points to: refused instead of half-done)."""
    directory = cache_dir()
    setting = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "the cache directory"
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{setting} ({directory}) is a file, not a directory: point "
                         f"${CACHE_ENV} at a directory for the converted weights.")
    return child_path(directory, name, setting)


def torchvision_source(src=None):
    """Where ported weights came from, for a model card or a preset's metadata: torchvision's
    release, its URL and ImageNet metrics, and the file name of `src` (a path, else None)."""
    return {
        "kind": "torchvision",
        "weights": "torchvision GoogLeNet_Weights.IMAGENET1K_V1",
        "url": TORCHVISION_URL,
        "file": os.path.basename(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else None,
        "metrics": {"ImageNet-1K": {"acc@1": 69.778, "acc@5": 89.530}},
        "note": "torchvision's transform_input=True is folded into the [-1, 1] input: "
                "x / 127.5 - 1 (preprocess_input(x, variant='torchvision')).",
    }


def _missing_weights_message(path):
    return (f"ImageNet weights for GoogLeNet(variant='torchvision') are not in the cache: "
            f"{path!r} does not exist (cache directory: ${CACHE_ENV}, else $KERAS_HOME/models, "
            "else ~/.keras/models). Convert torchvision's IMAGENET1K_V1 weights once: download "
            f"{TORCHVISION_URL} and run `{CONVERT_COMMAND} {TORCHVISION_FILE} {path}` "
            "(reading a .pth needs `pip install 'keras-googlenet[torch]'`; an .npz of the same "
            f"tensors does not). Putting {TORCHVISION_FILE} (or {TORCHVISION_FILE[:-4]}.npz) "
            "in the cache directory also works: it is converted on first use.")


def _download(dest):
    """Download torchvision's file to `dest`, which appears only complete and checked
    against the sha256 prefix in its name."""
    digest = hashlib.sha256()
    with atomic_path(dest, suffix=".part") as tmp, open(tmp, "wb") as f, \
            urllib.request.urlopen(TORCHVISION_URL, timeout=60) as response:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            f.write(chunk)
        if not digest.hexdigest().startswith(TORCHVISION_SHA256_PREFIX):
            raise ValueError(f"downloaded {TORCHVISION_URL} has sha256 {digest.hexdigest()[:16]}"
                             f"..., expected a hash starting {TORCHVISION_SHA256_PREFIX}.")


def _convert_into_cache(src, build_reference):
    """Port the state dict `src` onto the main-head model and save its weights in the cache,
    which holds the file only once it is completely written."""
    model = build_reference()
    port_state_dict(model, src)
    path = cache_file(IMAGENET_WEIGHTS_FILE)
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return path


def ensure_imagenet_weights(build_reference):
    """The path of the converted ImageNet weights, converted onto `build_reference()` (or
    downloaded: only with PyTorch and `$KERAS_GOOGLENET_OFFLINE` unset) first if needed;
    else a `ValueError` saying how (docs/weights.md)."""
    path = os.path.join(cache_dir(), IMAGENET_WEIGHTS_FILE)
    if os.path.isfile(path):
        return path
    cache_file(IMAGENET_WEIGHTS_FILE)  # a cache directory that is a file: say so first
    pth = os.path.join(cache_dir(), TORCHVISION_FILE)
    npz = pth[:-len(".pth")] + ".npz"
    has_torch = importlib.util.find_spec("torch") is not None  # to read a .pth
    for candidate in (npz, pth):
        if os.path.isfile(candidate) and (candidate == npz or has_torch):
            return _convert_into_cache(candidate, build_reference)
    if not os.environ.get(OFFLINE_ENV) and has_torch:
        try:
            _download(cache_file(TORCHVISION_FILE))
        except OSError as error:  # no network, proxy, disk: fall through to the help
            raise ValueError(f"could not download {TORCHVISION_URL} ({error}). "
                             + _missing_weights_message(path)) from error
        return _convert_into_cache(pth, build_reference)
    if os.path.isfile(pth):
        raise ValueError(f"found {pth!r} but reading it needs PyTorch: `pip install "
                         "'keras-googlenet[torch]'`, or put its '.npz' (converted where PyTorch is "
                         f"installed) next to it. {_missing_weights_message(path)}")
    raise ValueError(_missing_weights_message(path))


def _load_converted(model, path):
    load_weights_or_explain(
        lambda: model.load_weights(path),
        f"{path!r} is not a converted main-head GoogLeNet(variant='torchvision') weights "
        f"file: delete it and rerun `{CONVERT_COMMAND} {TORCHVISION_FILE} {path}`.")


def load_imagenet_weights(model, variant, include_top, classes, build_reference, widths=None,
                          width_multiplier=1.0):
    """`GoogLeNet(weights="imagenet")`: the ported weights into the freshly built `model` by
    layer name; aux heads keep their random initialization, with a warning. `ValueError` for a
    model that cannot take them (another variant, widths, class count or input channels)."""
    if variant != "torchvision":
        raise ValueError(f"`weights='imagenet'` needs variant='torchvision' (torchvision's "
                         f"IMAGENET1K_V1 weights, docs/weights.md); received variant={variant!r}. "
                         "Otherwise pass weights=None, or a '.weights.h5' file saved from a "
                         "GoogLeNet built with the same arguments.")
    if widths is not None or width_multiplier != 1.0:
        raise ValueError("`weights='imagenet'` needs the standard widths (widths=None, "
                         f"width_multiplier=1.0); received widths={widths!r}, "
                         f"width_multiplier={width_multiplier!r}.")
    if include_top and classes != 1000:
        raise ValueError("`weights='imagenet'` with include_top=True needs classes=1000; received "
                         f"classes={classes!r}. Use include_top=False for a backbone.")
    if model.get_layer("conv1_conv").kernel.shape[2] != 3:
        raise ValueError("`weights='imagenet'` needs 3 input channels (RGB).")
    path = ensure_imagenet_weights(build_reference)
    if include_top and find_layer(model, "aux1_fc") is None:
        # The file's own layers: input size, activation and preprocessing hold no weights.
        _load_converted(model, path)
        return path
    reference = build_reference()
    _load_converted(reference, path)
    untrained, _ = copy_weights_by_name(reference, model.layers)
    wrong = [name for name in untrained if not name.startswith(("aux1_", "aux2_"))]
    if wrong:  # the checks above should make this impossible: never load half the weights
        raise ValueError(f"the ImageNet weights do not fit layer {wrong[0]!r} of this model.")
    if untrained:
        warnings.warn(
            "The auxiliary heads have no ImageNet weights (torchvision's are not pretrained "
            f"either): {', '.join(untrained)} keep their random initialization; train them.",
            stacklevel=3)
    return path
