"""Deprecated alias of `keras_googlenet.complexity` (renamed in 0.2; this module goes in 0.3)."""

import warnings

from keras_googlenet.complexity import *  # noqa: F403
from keras_googlenet.complexity import __all__  # noqa: F401

warnings.warn("keras_googlenet.profile is deprecated: import keras_googlenet.complexity instead.",
              DeprecationWarning, stacklevel=2)
