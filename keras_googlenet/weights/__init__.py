"""torchvision's ImageNet GoogLeNet weights on `GoogLeNet(variant="torchvision")`: the port,
the state-dict functions beneath it and the `weights="imagenet"` cache (docs/weights.md)."""

from keras_googlenet.weights.convert import convert_torchvision, from_torchvision
from keras_googlenet.weights.imagenet import cache_dir
from keras_googlenet.weights.mapping import PortReport, port_state_dict
from keras_googlenet.weights.state_dict import load_state_dict, save_state_dict_npz

__all__ = ["PortReport", "cache_dir", "convert_torchvision", "from_torchvision", "load_state_dict",
           "port_state_dict", "save_state_dict_npz"]
