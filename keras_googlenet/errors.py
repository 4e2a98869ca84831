"""How every CLI reports an exception: a refusal of a bad argument or input is one line (exit
2); anything else is an internal error: one line with its type, the traceback in a log file."""

import datetime
import importlib.util
import os
import sys
import tempfile
import traceback

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL_ERROR", "describe_os_error", "first_line",
           "is_refusal", "refuse_or_report"]

EXIT_INTERNAL_ERROR = 1
EXIT_BAD_INPUT = 2


# The source folders of the packages whose own checks raise the refusals of bad arguments
# and inputs; found by name, never imported: the training package may not be installed.
_OUR_PACKAGES = tuple(
    os.path.dirname(os.path.abspath(spec.origin)) + os.sep
    for spec in map(importlib.util.find_spec, ("keras_googlenet", "keras_googlenet_training"))
    if spec is not None and spec.origin)


def is_refusal(error):
    """Whether `error` is one of our refusals of a bad argument or input: a `ValueError`
    (or a missing file) raised by this project's own code, not one from deep inside
    TensorFlow or another library, which is a bug to report, not a bad argument."""
    if not isinstance(error, (ValueError, FileNotFoundError)):
        return False
    raised_in = traceback.extract_tb(error.__traceback__, limit=-1)
    return not raised_in or os.path.abspath(raised_in[0].filename).startswith(_OUR_PACKAGES)


def first_line(error):
    """`error`'s first line, cut at 300 characters (a runtime's can span pages), or its type."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def describe_os_error(error, default_path=None):
    """`PATH: cause` for an `OSError`: the file it is about and the system's own words
    (`Permission denied`, `No space left on device`), not a guess."""
    path = error.filename or default_path
    cause = error.strerror or str(error) or type(error).__name__
    if error.filename2:
        path = f"{path} -> {error.filename2}"
    return f"{path}: {cause}" if path else cause


def refuse_or_report(prog, error, log_dir=None, debug=False):
    """The exit status for an exception a CLI did not expect by type: our own refusals
    print `prog: error: ...` and exit 2. Anything else is an internal error, reported in one
    line with its type; the full traceback goes to `log_dir/<prog>-error-*.log` (a temporary
    directory when `log_dir` does not exist) and, with `debug`, to the terminal."""
    if is_refusal(error):
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    text = "".join(traceback.format_exception(error))
    directories = [d for d in (log_dir,) if d and os.path.isdir(d) and not os.path.islink(d)]
    for directory in directories + [tempfile.gettempdir()]:
        try:
            fd, log_path = tempfile.mkstemp(
                prefix=f"{os.path.basename(prog.split()[-1])}-error-"
                       f"{datetime.datetime.now():%Y%m%d-%H%M%S}-",
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
