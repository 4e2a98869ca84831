"""Command-line shells over the library functions (`googlenet-train`, `-export`, ...).

Every CLI's `main` calls `quiet_start()` before anything imports TensorFlow, so its first
lines are its own; a CLI module therefore imports the library (which imports TensorFlow)
inside its functions. Importing this package has no side effects.
"""

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile

from keras_googlenet_training.cpu import choose_cpu_kernels

TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# Marks a log level we chose, not the user: launched children inherit it and quiet down too.
_OUR_LOG_LEVEL_ENV = "KERAS_GOOGLENET_QUIET_START"
# Lines TensorFlow prints at import and device discovery whatever the log level (absl logs
# before it is initialised), or at INFO/ERROR level on every machine without a GPU. Only
# these are dropped: anything else on stderr still shows.
START_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
    "oneDNN custom operations are on",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
)


@contextlib.contextmanager
def _stderr_without(noise):
    """Capture file descriptor 2 (C++ logs bypass `sys.stderr`), then replay all but `noise`."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to quiet
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if not any(pattern in line for pattern in noise)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def quiet_start(environ=None):
    """Import TensorFlow with its C++ log level at 2 (errors only) and without its start-up
    banner, unless the user chose a level: a newcomer sees only our output. Before that,
    `choose_cpu_kernels` turns oneDNN on for an AVX2-only CPU (see its docstring).

    Returns True when it quieted the start, False when the user's level stands.
    """
    environ = os.environ if environ is None else environ
    choose_cpu_kernels(environ)
    if TF_LOG_LEVEL_ENV in environ and _OUR_LOG_LEVEL_ENV not in environ:
        return False
    environ[TF_LOG_LEVEL_ENV] = "2"
    environ[_OUR_LOG_LEVEL_ENV] = "1"
    with _stderr_without(START_NOISE):
        import tensorflow as tf

        # CUDA initialises here, printing its cuInit error on a machine without a GPU.
        tf.config.list_physical_devices("GPU")
    return True


# What each extra of pyproject.toml brings that a CLI imports, by module name.
EXTRA_MODULES = {
    "train": ("sklearn", "tensorflow_datasets", "matplotlib", "PIL"),
    "export": ("tf2onnx", "onnx", "onnxruntime", "ai_edge_litert", "PIL"),
    "tune": ("keras_tuner", "grpc", "tensorboard"),
}


def _importable(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import; a spec-less module
        return False


def require_extras(prog, *extras):
    """Exit 2 with one line naming the extra to install when a CLI's dependency is missing.

    The core install (`pip install keras-googlenet`) is the model library alone; each CLI
    checks its extras first, so a missing one is a sentence, not an ImportError deep inside.
    """
    for extra in extras:
        missing = [m for m in EXTRA_MODULES[extra] if not _importable(m)]
        if missing:
            print(f"{prog}: error: needs the '{extra}' extra: pip install "
                  f"'keras-googlenet[{extra}]' (missing: {', '.join(missing)})",
                  file=sys.stderr)
            raise SystemExit(2)


class DefaultsFormatter(argparse.HelpFormatter):
    """Shows a default only when there is one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def add_dataset_arguments(group):
    """`--dataset`, `--data-dir` and `--val-fraction`: the arguments of `load_dataset`
    (`keras_googlenet_training.data`), the same in every CLI that loads a dataset."""
    group.add_argument("--dataset", default="digits", help="digits | tfds:NAME | folder:PATH")
    group.add_argument("--data-dir", default=None, help="TFDS data directory")
    group.add_argument("--val-fraction", type=float, default=0.2,
                       help="held-out share when the dataset has no validation split")


def drop_options(argv, with_value=(), flags=()):
    """`argv` without the options a launcher keeps for itself.

    `with_value` options take a value (`--workers 2` or `--workers=2`); `flags` take none.
    """
    rest, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in with_value:
            skip = True
        elif token in flags or any(token.startswith(f"{o}=") for o in with_value):
            continue
        else:
            rest.append(token)
    return rest


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an unexpected error")
