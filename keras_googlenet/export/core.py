"""`export_model`: every requested format converted, verified, carded and published."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from keras_googlenet import checks
from keras_googlenet.export import cards
from keras_googlenet.export.convert import (
    convert_onnx,
    convert_tflite,
    int8_layer_errors,
    write_savedmodel,
)
from keras_googlenet.export.formats import (
    DEFAULT_INT8_IO,
    FORMATS,
    MIN_ONNX_OPSET,
    check_destination,
    check_int8_float_layers,
    check_name,
    merged_bounds,
    validate_export_arguments,
)
from keras_googlenet.export.report import (
    ArtifactResult,
    ExportError,
    ExportReport,
    format_verification,
    log_progress,
    missed_bounds,
)
from keras_googlenet.export.source import (
    is_quantize_aware_source,
    load_source,
    take_images,
    to_pixels,
    with_preprocessing,
)
from keras_googlenet.export.tflite_gpu import gpu_delegate_report
from keras_googlenet.export.verify import check_max_accuracy_drop, keras_reference, verify_artifact
from keras_googlenet.model_card import (
    CARD_IN_SAVEDMODEL,
    CARD_SUFFIX,
    card_path_for,
    has_preprocessing_layer,
)
from keras_googlenet.paths import unwritable
from keras_googlenet.publish import (
    discard_stage,
    is_disk_full,
    path_size,
    publish,
    remove_path,
    replace_owned,
    write_json_atomic,
)
from keras_googlenet.quantization import (
    folded_float_model,
    is_quantize_aware,
    tflite_from_learned_ranges,
    with_pixel_input,
)
from keras_googlenet.runtime import load_predictor

# The images the int8 layer report is measured on: its debug model runs every quantized op
# twice, and the ranking of the worst layers settles within a few dozen images.
_DEBUG_IMAGES = 32


class _BoundMissedError(Exception):
    """A missed verification bound: its message is the whole error."""


@dataclasses.dataclass
class _Plan:
    """What the export of every format shares: the model, the base card, the options."""

    model: keras.Model  # the float32 inference model, also the verification reference
    base_card: dict
    out_dir: str
    name: str
    formats: list
    options: dict  # export_model's keyword arguments that act per format
    bounds: dict
    reference: dict | None = None
    representative: object = None
    work_dir: str = ""
    stage_dir: str = ""  # where every artefact and card is written before publishing
    swap: bool = False  # whether the stage replaces `out_dir` whole (else unit by unit)
    staged: dict = dataclasses.field(default_factory=dict)  # format -> (staged, target)
    created: set = dataclasses.field(default_factory=set)  # names this export put in the stage
    pixel_model: keras.Model | None = None
    int8_layer_errors: list | None = None  # the int8 layers worst first (convert.py)
    conversion_savedmodels: dict = dataclasses.field(default_factory=dict)
    qat_model: keras.Model | None = None  # a quantize_aware source: int8 from its ranges

    def in_model(self, fmt):
        """Whether `fmt`'s artefact has the preprocessing inside (takes RGB pixels)."""
        return (has_preprocessing_layer(self.model) or self.options["include_preprocessing"]
                or (fmt == "tflite-int8" and self.options["int8_io"] == "uint8"))

    def model_for(self, fmt):
        """The Keras model behind `fmt`'s artefact: scaled input, or pixels."""
        if not self.in_model(fmt) or has_preprocessing_layer(self.model):
            return self.model
        if self.pixel_model is None:
            self.pixel_model = with_preprocessing(self.model)
        return self.pixel_model


def export_model(
    source, out_dir, formats=None, *, name=None, input_size=None, calibration_data=None,
    calibration_steps=200, int8_io=DEFAULT_INT8_IO, include_preprocessing=False, labels=None,
    tflite_metadata=True, author=None, license=None, uint8_signature=True, verify=True,
    verification_data=None, verification_samples=512, bounds=None, max_accuracy_drop=None,
    int8_float_layers=None, opset=MIN_ONNX_OPSET, strict=True, verbose=True,
):
    """Export `source`'s float32 inference model to each format: every artefact is staged,
    verified against Keras, carded (`<artefact>.json`), and published once all are done.

    Args:
        source: a `.keras` file, a run directory (`qat.keras`, `inference.keras` or
            `model.keras`) or a `keras.Model`; a `quantize_aware` one gives int8 from its ranges.
        out_dir: destination directory (created; not a symbolic link; its other files stay).
        formats: a list (or comma-separated string) from `FORMATS`. Default: every float
            format, plus `"tflite-int8"` when `calibration_data` is given.
        name: base name of the artefacts (default: the model's name).
        input_size: fixes the input size of a model built for any size.
        calibration_data, calibration_steps: up to `calibration_steps` images for
            `tflite-int8` (float32 preprocessed or uint8 pixels: an array, `(images, labels)`,
            a `tf.data.Dataset` or batches), or the converter's `representative_dataset`.
        int8_io: the int8 model's input/output type: `"uint8"` (pixels in: the preprocessing
            is put inside), `"int8"` or `"float32"`.
        include_preprocessing: put the preprocessing inside every artefact (RGB pixels in).
        labels: class names (a list, or a text file with one per line); default: the run's
            `labels.txt`, else ImageNet's names for 1000 classes, else the indices.
        tflite_metadata: write TFLite Metadata (normalization, labels) into every `.tflite`.
        author, license: recorded in the cards and the TFLite metadata.
        uint8_signature: add the SavedModel signature `serving_uint8` (uint8, any size).
        verify: compare every artefact with Keras before publishing it.
        verification_data, verification_samples: up to `verification_samples` validation
            images (as `calibration_data`), labelled or not; default: random inputs.
        bounds: per-format overrides of `DEFAULT_BOUNDS`.
        max_accuracy_drop: the top-1 accuracy drop (percentage points) allowed on labelled
            images: a number, or a dict per format (default: `DEFAULT_BOUNDS`).
        int8_float_layers: layer names (as the int8 report lists them) that `tflite-int8`
            keeps in float; needs `int8_io` "int8" or "float32".
        opset: ONNX opset (>= 17).
        strict: raise `ExportError` when any format failed (after trying them all).
        verbose: progress on stderr.

    Returns:
        An `ExportReport`: `report[fmt].verification`, `.int8_layers`; `report.summary()`.

    Raises:
        ValueError: a bad argument (unknown format, int8 without calibration data, a `name`
            with a path, labels not one per class, ...), before any write.
        FileNotFoundError: `source` does not exist.
        ExportError: with `strict`, a format failed (conversion or bound): nothing was
            published for it, and its existing artefact was kept.
    """
    # Every check that needs no model, before the source is loaded.
    check_destination(source, out_dir, name)
    learned_ranges = is_quantize_aware_source(source)
    formats = validate_export_arguments(formats, calibration_data, calibration_steps, int8_io,
                                        opset, verification_samples, learned_ranges)
    float_layers = check_int8_float_layers(int8_float_layers, formats, int8_io)
    if learned_ranges and float_layers:
        raise ValueError("`int8_float_layers` (--int8-float-layers) applies to post-training "
                         "int8; a quantization-aware model is converted from its learned "
                         "ranges whole.")
    if not isinstance(include_preprocessing, bool):
        checks.fail("include_preprocessing", "True or False", include_preprocessing)
    options = {"include_preprocessing": include_preprocessing, "int8_io": int8_io, "opset": opset,
               "uint8_signature": uint8_signature, "tflite_metadata": tflite_metadata,
               "verify": verify, "verbose": verbose, "int8_float_layers": float_layers}
    plan = _plan(source, out_dir, name, formats, input_size, labels, author, license, options,
                 merged_bounds(bounds, check_max_accuracy_drop(max_accuracy_drop)))
    _prepare_inputs(plan, calibration_data, calibration_steps, verification_data,
                    verification_samples)
    report = ExportReport(out_dir=plan.out_dir, results=_export_staged(plan))
    if strict and not report.ok:
        raise ExportError(f"export failed for {[r.format for r in report.results if not r.ok]}"
                          f"; nothing was written for them.\n{report.summary()}", report)
    return report


def _plan(source, out_dir, name, formats, input_size, labels, author, license, options, bounds):
    """Load the source and its base card; check `int8_float_layers` against its layers."""
    explicit_labels = cards.read_labels(labels) if labels is not None else None
    log_progress(options["verbose"], f"[export] loading {getattr(source, 'name', source)}")
    model, base_card = load_source(source, input_size=input_size)
    base_card["labels"] = cards.resolve_labels(explicit_labels, source, base_card,
                                               options["verbose"])
    for key, value in (("author", author), ("license", license)):
        if value is not None:
            base_card[key] = str(value)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if name is None:  # the model's own name must be a plain file name too
        check_name(out_dir, model.name)
    qat_model = None
    if is_quantize_aware(model):  # the float formats and the reference: the folded weights
        qat_model, model = model, folded_float_model(model)
    check_int8_float_layers(options["int8_float_layers"], formats, options["int8_io"],
                            [layer.name for layer in model.layers])
    return _Plan(model=model, base_card=base_card, out_dir=out_dir, name=name or model.name,
                 formats=formats, options=options, bounds=bounds, qat_model=qat_model)


def _prepare_inputs(plan, calibration_data, calibration_steps, verification_data,
                    verification_samples):
    """The int8 calibration (none for a QAT source) and, with `verify`, the Keras reference."""
    if plan.qat_model is not None:
        plan.base_card["calibration"] = {"images": 0,
                                         "ranges": "learned by quantization-aware training"}
        if calibration_data is not None:
            note = "calibration_data ignored: the int8 ranges are the ones QAT learned"
            plan.base_card["calibration"]["note"] = note
            log_progress(plan.options["verbose"], f"[export] {note}")
    elif "tflite-int8" in plan.formats:
        plan.representative = _representative(plan, calibration_data, calibration_steps)
    if plan.options["verify"]:
        log_progress(plan.options["verbose"], "[export] computing Keras reference outputs")
        plan.reference = keras_reference(plan.model, plan.base_card["output"]["activation"],
                                         verification_data, verification_samples)


def _representative(plan, calibration_data, calibration_steps):
    """The int8 converter's `representative_dataset`, from `calibration_data`."""
    if callable(calibration_data) and not hasattr(calibration_data, "__iter__"):
        return calibration_data
    size = tuple(plan.model.input_shape[1:3])
    calib_x, _ = take_images(calibration_data, calibration_steps, size, "calibration_data")
    plan.base_card["calibration"] = {"images": int(len(calib_x))}
    if plan.in_model("tflite-int8"):
        # Pixels, with one 0..255 gradient so that the input range calibrates to
        # exactly [0, 255]: a uint8 input then carries the pixels unchanged.
        gradient = np.broadcast_to(np.linspace(-1.0, 1.0, size[1], dtype="float32")
                                   [None, None, :, None], (1, *size, 3))
        calib_x = to_pixels(np.concatenate([calib_x, gradient]))
    return _one_at_a_time(calib_x)


def _one_at_a_time(images):
    """A TFLite `representative_dataset`: a callable yielding `[one image]` per image."""
    return lambda: ([images[i:i + 1]] for i in range(len(images)))


def _export_staged(plan):
    """Every format converted, carded and verified in the stage, then published."""
    # Everything is checked: the first byte is written now, in the staging directory.
    plan.stage_dir, plan.swap = _staging(plan.out_dir, plan.name)
    plan.work_dir = tempfile.mkdtemp(prefix="googlenet-export-")
    try:
        results = [_export_one(plan, fmt) for fmt in plan.formats]
        _publish_all(plan, results)
    finally:
        shutil.rmtree(plan.work_dir, ignore_errors=True)
        if not discard_stage(plan.stage_dir, plan.created):
            log_progress(True, f"[export] WARNING: kept {plan.stage_dir}: it holds files of "
                               f"{plan.out_dir} that could not be moved back")
    return results


def _export_one(plan, fmt):
    """Convert, card and verify one format in the stage; failures are recorded, not raised."""
    suffix, _ = FORMATS[fmt]
    target = os.path.join(plan.out_dir, plan.name + suffix)
    staged = os.path.join(plan.stage_dir, plan.name + suffix)
    staged_card = card_path_for(staged)
    result = ArtifactResult(format=fmt)
    verbose = plan.options["verbose"]
    start = time.perf_counter()
    plan.created.update({os.path.basename(staged), os.path.basename(staged_card)})
    try:
        log_progress(verbose, f"[export] {fmt}: converting -> {target}")
        card = _artifact_card(plan, fmt, target, staged, result)
        write_json_atomic(card, staged_card)
        if fmt == "savedmodel":  # it carries its card too; the TFLite converter reuses it
            write_json_atomic(card, os.path.join(staged, CARD_IN_SAVEDMODEL))
            plan.conversion_savedmodels.setdefault(plan.in_model(fmt), staged)
        result.card = card
        plan.staged[fmt] = (staged, target)
        log_progress(verbose, f"[export] {fmt}: ok, {card['file_size_bytes'] / 1e6:.2f} MB; "
                              f"{format_verification(result.verification)}")
        gpu = card.get("gpu_delegate")
        if gpu is not None and not gpu["compatible"]:
            result.warnings.append(cards.gpu_warning(gpu))
            log_progress(verbose, f"[export] {fmt}: WARNING: {result.warnings[-1]}")
    except Exception as error:  # record, clean up, try the other formats
        result.error = str(error) if isinstance(error, _BoundMissedError) \
            else f"{type(error).__name__}: {error}"
        if is_disk_full(error):  # the staged file goes; a previous artefact stays
            result.error = f"no space left on {plan.out_dir!r} while writing {target!r}"
        log_progress(verbose, f"[export] {fmt}: FAILED: {result.error}")
        remove_path(staged)
        remove_path(staged_card)
    finally:
        result.seconds = time.perf_counter() - start
    return result


def _convert(plan, fmt, staged):
    """Write `fmt`'s artefact at `staged` (ONNX, SavedModel); TFLite: return its bytes."""
    options = plan.options
    if fmt == "savedmodel":
        write_savedmodel(plan.model_for(fmt), staged, uint8_signature=options["uint8_signature"])
        return None
    if fmt == "onnx":
        convert_onnx(plan.model_for(fmt), staged, opset=options["opset"])
        return None
    if fmt == "tflite-int8" and plan.qat_model is not None:
        qat_model = with_pixel_input(plan.qat_model) if plan.in_model(fmt) else plan.qat_model
        return tflite_from_learned_ranges(qat_model, int8_io=options["int8_io"])
    savedmodel = plan.conversion_savedmodels.get(plan.in_model(fmt))
    if savedmodel is None:  # the one of this input kind, written once for every TFLite format
        savedmodel = os.path.join(plan.work_dir, f"savedmodel_{fmt}")
        write_savedmodel(plan.model_for(fmt), savedmodel, uint8_signature=False)
        plan.conversion_savedmodels[plan.in_model(fmt)] = savedmodel
    if fmt == "tflite-int8" and (options["verify"] or options["int8_float_layers"]):
        log_progress(options["verbose"], f"[export] {fmt}: measuring each layer's "
                                         "quantization error")
        debug = plan.representative  # the debugger's inputs: verification images, else these
        if plan.reference is not None:
            images = plan.reference["agree_x"][:_DEBUG_IMAGES]
            debug = _one_at_a_time(to_pixels(images) if plan.in_model(fmt) else images)
        flatbuffer, plan.int8_layer_errors = int8_layer_errors(
            savedmodel, plan.representative, debug, [layer.name for layer in plan.model.layers],
            options["int8_float_layers"], options["int8_io"])
        if flatbuffer is not None:  # layers kept in float: the debugger wrote the model
            return flatbuffer
    # the converter reads `representative` for tflite-int8 only
    return convert_tflite(savedmodel, fmt, plan.representative, int8_io=options["int8_io"])


def _artifact_card(plan, fmt, target, staged, result):
    """`fmt`'s artefact converted, written and verified (`_BoundMissedError`); its card."""
    flatbuffer = _convert(plan, fmt, staged)
    options = plan.options
    card = cards.format_card(plan.base_card, fmt, target, options, plan.in_model(fmt))
    if fmt.startswith("tflite"):
        if options["tflite_metadata"]:
            log_progress(options["verbose"], f"[export] {fmt}: writing TFLite metadata")
            flatbuffer, card["tflite_metadata"] = cards.with_tflite_metadata(flatbuffer, card)
        card["gpu_delegate"] = gpu_delegate_report(flatbuffer)
        with open(staged, "wb") as f:
            f.write(flatbuffer)
        cards.fill_io(card, staged)
    if fmt == "tflite-int8":
        card["int8_float_layers"] = options["int8_float_layers"]
        card["int8_layer_errors"] = result.int8_layers = plan.int8_layer_errors
    card["verification"] = None
    if options["verify"]:
        log_progress(options["verbose"], f"[export] {fmt}: verifying against Keras")
        card["verification"] = result.verification = verify_artifact(
            load_predictor(staged, card=card), plan.reference, plan.bounds[fmt],
            savedmodel_path=staged if fmt == "savedmodel" and options["uint8_signature"] else None)
        if not result.verification["passed"]:
            raise _BoundMissedError(missed_bounds(result.verification))
    card["file_size_bytes"] = path_size(staged)
    return card


def _staging(out_dir, name):
    """(the stage, whether it replaces `out_dir` whole): a hidden sibling, else inside it."""
    parent = os.path.dirname(out_dir)
    new = not os.path.isdir(out_dir)
    if not new and (os.path.ismount(out_dir) or unwritable(parent) is not None):
        return tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.export-"), False
    os.makedirs(parent, exist_ok=True)
    swap = new or _swappable(out_dir)
    return tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.export-"), swap


def _swappable(out_dir):
    """Whether the existing `out_dir` holds only exports and can be renamed away."""
    suffixes = tuple(suffix for suffix, _ in FORMATS.values())
    suffixes += tuple(suffix + CARD_SUFFIX for suffix in suffixes) + (".keras", ".keras.json")
    if not all(name.endswith(suffixes) for name in os.listdir(out_dir)):
        # A directory of the user's own (a home, a shared folder): never replaced whole,
        # which would change its inode, owner and ACLs under everyone using it.
        return False
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was deleted
        return True
    real = os.path.realpath(out_dir)
    return cwd != real and not cwd.startswith(real.rstrip(os.sep) + os.sep)


def _publish_all(plan, results):
    """Publish every verified artefact and its card: one directory swap, or pair by pair."""
    if not plan.staged:
        return
    if plan.swap:
        owned = {os.path.basename(path) for _, target in plan.staged.values()
                 for path in (target, card_path_for(target))}
        # The old artefacts of these formats go; everything else in out_dir is kept.
        plan.created = owned  # from now on the stage may also hold the user's files
        replace_owned(plan.stage_dir, plan.out_dir, owned=owned.__contains__)
    else:
        for staged, target in plan.staged.values():
            publish(staged, target)
            publish(card_path_for(staged), card_path_for(target))
    for result in results:
        if result.format in plan.staged:
            result.path = plan.staged[result.format][1]
            result.card_path = card_path_for(result.path)
    log_progress(plan.options["verbose"], f"[export] published {len(plan.staged)} artefact(s) "
                 f"with their cards in {plan.out_dir}")
