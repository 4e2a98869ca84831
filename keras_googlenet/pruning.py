"""Deprecated alias of `keras_googlenet.heads` (renamed in 0.2; this module goes in 0.3)."""

import warnings

from keras_googlenet.heads import *  # noqa: F403
from keras_googlenet.heads import __all__  # noqa: F401

warnings.warn("keras_googlenet.pruning is deprecated: import keras_googlenet.heads instead.",
              DeprecationWarning, stacklevel=2)
