"""torchvision's ImageNet GoogLeNet weights on `GoogLeNet(variant="torchvision")`
(docs/weights.md): `from_torchvision`, `convert_torchvision`, and the state-dict functions
beneath them. `GoogLeNet(weights="imagenet")` reads the cache in `cache_dir()`."""

from keras_googlenet.weights.convert import convert_torchvision, from_torchvision
from keras_googlenet.weights.imagenet import cache_dir
from keras_googlenet.weights.mapping import PortReport, port_state_dict
from keras_googlenet.weights.state_dict import load_state_dict, save_state_dict_npz

__all__ = [
    "PortReport", "cache_dir", "convert_torchvision", "from_torchvision", "load_state_dict",
    "port_state_dict", "save_state_dict_npz",
]
