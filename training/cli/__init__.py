"""Command-line shells over the library functions (`googlenet-train`, `-export`, ...).

Importing this package quiets TensorFlow's start-up (`quiet_start`), so every CLI's first
lines are its own.
"""

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile

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
    banner, unless the user chose a level: a newcomer sees only our output.

    Returns True when it quieted the start, False when the user's level stands.
    """
    environ = os.environ if environ is None else environ
    if TF_LOG_LEVEL_ENV in environ and _OUR_LOG_LEVEL_ENV not in environ:
        return False
    environ[TF_LOG_LEVEL_ENV] = "2"
    environ[_OUR_LOG_LEVEL_ENV] = "1"
    with _stderr_without(START_NOISE):
        import tensorflow as tf

        # CUDA initialises here, printing its cuInit error on a machine without a GPU.
        tf.config.list_physical_devices("GPU")
    return True


quiet_start()


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


EXIT_INTERNAL_ERROR = 1
# Packages whose own checks raise the refusals of bad arguments and inputs.
_OUR_PACKAGES = tuple(
    os.path.dirname(os.path.abspath(importlib.util.find_spec(name).origin)) + os.sep
    for name in ("keras_googlenet", "keras_googlenet_training"))


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an unexpected error")


def is_refusal(error):
    """Whether `error` is one of our refusals of a bad argument or input: a `ValueError`
    (or a missing file) raised by this project's own code, not one from deep inside
    TensorFlow or another library, which is a bug to report, not a bad argument."""
    if not isinstance(error, (ValueError, FileNotFoundError)):
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return True
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OUR_PACKAGES)


def report_unexpected(prog, error, log_dir=None, debug=False):
    """One line for an unexpected internal error, its type included; the full traceback
    goes to `log_dir/<prog>-error.log` (a temporary file when `log_dir` does not exist)
    and, with `--debug`, to the terminal. Returns the exit status."""
    import datetime
    import traceback

    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    log_path = None
    directories = [d for d in (log_dir,) if d and os.path.isdir(d) and not os.path.islink(d)]
    for directory in directories + [tempfile.gettempdir()]:
        try:
            fd, log_path = tempfile.mkstemp(
                prefix=f"{prog}-error-{datetime.datetime.now():%Y%m%d-%H%M%S}-",
                suffix=".log", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{prog} {' '.join(sys.argv[1:])}\n{text}")
            break
        except OSError:
            log_path = None
    if debug:
        sys.stderr.write(text)
    message = str(error).splitlines()[0] if str(error) else ""
    where = f"full traceback in {log_path}" if log_path else "no log could be written"
    print(f"{prog}: internal error: {type(error).__name__}: {message} ({where}"
          f"{'' if debug else '; --debug prints it'}). This is a bug, not a bad argument: "
          "please report it.", file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def refuse_or_report(prog, error, log_dir=None, debug=False, exit_bad=2):
    """The exit status for an exception a CLI did not expect by type: our own refusals
    print `prog: error: ...` and exit 2; anything else is `report_unexpected`."""
    if is_refusal(error):
        print(f"{prog}: error: {error}", file=sys.stderr)
        return exit_bad
    return report_unexpected(prog, error, log_dir=log_dir, debug=debug)
