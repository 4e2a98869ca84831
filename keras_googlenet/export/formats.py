"""The export formats, their verification bounds, and the up-front argument checks."""

import os

import keras

from keras_googlenet import checks
from keras_googlenet.paths import child_path, refuse_symlink, writable_destination

__all__ = ["DEFAULT_BOUNDS", "DEFAULT_INT8_IO", "FLOAT_FORMATS", "FORMATS", "INT8_IO_TYPES",
           "MIN_ONNX_OPSET", "UINT8_SIGNATURE", "check_destination", "check_int8_float_layers",
           "check_name", "merged_bounds", "validate_export_arguments"]

# format -> (file name suffix after the base name, precision written in the card)
FORMATS = {
    "savedmodel": ("_savedmodel", "float32"),
    "tflite-fp32": ("_fp32.tflite", "float32"),
    "tflite-fp16": ("_fp16.tflite", "float16"),
    "tflite-dynamic": ("_dynamic.tflite", "dynamic-range int8 (int8 weights, float activations)"),
    "tflite-int8": ("_int8.tflite", "int8 (full integer)"),
    "onnx": (".onnx", "float32"),
}
FLOAT_FORMATS = tuple(fmt for fmt in FORMATS if fmt != "tflite-int8")

# Verification bounds, as docs/export.md ("Verification") defines them.
DEFAULT_BOUNDS = {
    "savedmodel": {"max_abs_diff": 1e-4, "accuracy_drop": 0.1},
    "tflite-fp32": {"max_abs_diff": 1e-4, "accuracy_drop": 0.1},
    "onnx": {"max_abs_diff": 1e-4, "accuracy_drop": 0.1},
    "tflite-fp16": {"top1_agreement": 0.995, "accuracy_drop": 0.1},
    "tflite-dynamic": {"top1_agreement": 0.99, "accuracy_drop": 1.0},
    "tflite-int8": {"top1_agreement": 0.99, "accuracy_drop": 1.0},
}

INT8_IO_TYPES = ("uint8", "int8", "float32")
# uint8, which MediaPipe Tasks and the TFLite Task Library need (they refuse int8), is exact
# on raw pixels only: a uint8 export has the preprocessing inside (scale 1, zero point 0).
DEFAULT_INT8_IO = "uint8"
MIN_ONNX_OPSET = 17
UINT8_SIGNATURE = "serving_uint8"


def merged_bounds(bounds, accuracy_drops):
    """`DEFAULT_BOUNDS` with `bounds` on top, and `accuracy_drops` (format -> points)."""
    all_bounds = {fmt: dict(DEFAULT_BOUNDS[fmt]) for fmt in FORMATS}
    for fmt, override in (bounds or {}).items():
        if fmt not in FORMATS:
            raise ValueError(f"`bounds` has an unknown format {fmt!r}; allowed: {list(FORMATS)}.")
        all_bounds[fmt].update(override)
    for fmt, drop in accuracy_drops.items():
        all_bounds[fmt]["accuracy_drop"] = drop
    return all_bounds


def check_destination(source, out_dir, name=None):
    """`ValueError` naming the argument for a bad `source` type, `out_dir` or `name`,
    before any work: a name such as '../x' would write outside `out_dir`."""
    if not isinstance(source, (str, os.PathLike, keras.Model)):
        raise ValueError("`source` must be a '.keras' file, a run directory or a keras.Model; "
                         f"received {source!r}.")
    writable_destination(out_dir, "out_dir", "--out")
    refuse_symlink(os.fspath(out_dir).rstrip(os.sep) or os.sep, "out_dir")
    if name is not None:
        check_name(out_dir, name)


def check_name(out_dir, name):
    """`name` as the artefacts' base name: one plain file name inside `out_dir`."""
    try:
        child_path(os.fspath(out_dir), name, "name")
    except ValueError:
        if isinstance(name, str) and os.path.islink(os.path.join(os.fspath(out_dir), name)):
            raise
        raise ValueError("`name` must be a file name without a path (no '/', not '.' or "
                         f"'..', not starting with '.'); received name={name!r}.") from None
    if name.startswith("."):  # hidden, and the prefix of our temporary files
        raise ValueError("`name` must not start with '.' (hidden files are the export's "
                         f"temporary ones); received name={name!r}.")


def validate_export_arguments(formats, calibration_data, calibration_steps, int8_io, opset,
                              verification_samples, learned_ranges=False):
    """The resolved format list; `ValueError` naming the argument on any bad value.
    `learned_ranges`: the source is quantization-aware, its `tflite-int8` needs no images."""
    int8_ready = learned_ranges or calibration_data is not None
    if formats is None:
        formats = list(FLOAT_FORMATS) + (["tflite-int8"] if int8_ready else [])
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {unknown or formats!r}: `formats` must be a subset "
                         f"of {list(FORMATS)}.")
    formats = [f for f in FORMATS if f in formats]  # canonical order: SavedModel first
    if "tflite-int8" in formats and not int8_ready:
        raise ValueError("format 'tflite-int8' (full-integer quantization) needs "
                         "`calibration_data`: a representative sample of training images (CLI: "
                         "--calibration-data DATASET). Use 'tflite-dynamic' for int8 weights "
                         "without calibration.")
    checks.one_of("int8_io", int8_io, INT8_IO_TYPES)
    checks.positive_int("calibration_steps", calibration_steps)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_ONNX_OPSET:
        checks.fail("opset", f"an int >= {MIN_ONNX_OPSET}", opset)
    checks.positive_int("verification_samples", verification_samples)
    return formats


def check_int8_float_layers(int8_float_layers, formats, int8_io, layer_names=None):
    """`int8_float_layers` as a list of layer names; `ValueError` naming the argument.
    With `layer_names` (the model's), every name must be one of them."""
    if int8_float_layers is None:
        return []
    names = int8_float_layers
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError("`int8_float_layers` must be a list of layer names (or a comma-"
                         f"separated string); received {int8_float_layers!r}.")
    if names and "tflite-int8" not in formats:
        raise ValueError("`int8_float_layers` (--int8-float-layers) applies to the format "
                         f"'tflite-int8', which is not among the formats {list(formats)}.")
    if names and int8_io == "uint8":
        # The quantization debugger, whose denylist keeps layers in float, writes an int8
        # or float32 interface only.
        raise ValueError("`int8_float_layers` (--int8-float-layers) needs int8_io 'int8' or "
                         "'float32' (--int8-io); received int8_io='uint8'.")
    unknown = [n for n in names if layer_names is not None and n not in layer_names]
    if unknown:
        raise ValueError(f"`int8_float_layers` (--int8-float-layers) has unknown layer(s) "
                         f"{unknown}; the model's layers are, for example: "
                         f"{', '.join(list(layer_names)[1:9])}, ... ({len(layer_names)} in all; "
                         "the export report lists the int8 ones by quantization error).")
    return list(names)
