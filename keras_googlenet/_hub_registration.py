"""Register the KerasHub classes of `keras_googlenet.hub` once both packages are imported.

KerasHub finds the classes of a preset by the names written in its JSON files
(`"keras_googlenet>GoogLeNetBackbone"`, ...), looked up in Keras' registry of serializable
objects; nothing in a preset can run code. So `keras_hub.models.ImageClassifier.from_preset`
works once `keras_googlenet.hub` has been imported. That module subclasses KerasHub's classes
and so imports `keras_hub` (about 2 s on top of TensorFlow, plus an optional dependency),
which `import keras_googlenet` must not pay. Instead:

- `keras_hub` already imported: `keras_googlenet.hub` is imported now;
- otherwise a finder on `sys.meta_path` waits for `import keras_hub` and imports
  `keras_googlenet.hub` right after KerasHub's own `__init__` has run, then removes itself.

Either order of `import keras_googlenet` / `import keras_hub` therefore registers the
classes. Installing the finder costs microseconds; it only ever looks at the name
`keras_hub`. A process that never imports `keras_googlenet` gets KerasHub's error naming the
unregistered class `keras_googlenet>GoogLeNetBackbone`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

KERAS_HUB = "keras_hub"
HUB_MODULE = "keras_googlenet.hub"


def register_hub_classes():
    """Import `keras_googlenet.hub`, registering its classes; warn instead of raising.

    Called while `import keras_hub` completes: an incompatible KerasHub must not break
    that import, only the GoogLeNet presets.
    """
    try:
        importlib.import_module(HUB_MODULE)
    except Exception as error:  # noqa: BLE001 - reported, never raised into `import keras_hub`
        warnings.warn(
            f"keras_googlenet could not register its KerasHub classes ({type(error).__name__}: "
            f"{error}); GoogLeNet presets will not load. `import {HUB_MODULE}` shows the error.",
            stacklevel=2,
        )


class _RegisterAfterKerasHub(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of `keras_hub` to register afterwards."""

    def __init__(self):
        self._resolving = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != KERAS_HUB or self._resolving:
            return None
        self._resolving = True
        try:  # the spec the other finders would return
            spec = importlib.util.find_spec(fullname)
        finally:
            self._resolving = False
        _remove_finder()
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_module_then_register(module):
            exec_module(module)
            register_hub_classes()

        # The loader object belongs to this spec only; keeping it (rather than a wrapper
        # loader) keeps `module.__loader__` and resource access unchanged.
        loader.exec_module = exec_module_then_register
        return spec


def _remove_finder():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterKerasHub)]


def register_when_keras_hub_is_imported():
    """Register the KerasHub classes now if `keras_hub` is imported, else when it gets imported."""
    module = sys.modules.get(KERAS_HUB)
    if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing",
                                          False):
        register_hub_classes()
    elif module is None and not any(isinstance(f, _RegisterAfterKerasHub) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKerasHub())
