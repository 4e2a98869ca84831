"""`export_model`: every requested format converted, verified, carded and published."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from keras_googlenet.export.cards import (
    _card,
    _fill_io,
    _metadata_summary,
    _predictor_for,
    _resolve_labels,
    _with_tflite_metadata,
    gpu_warning,
    read_labels,
)
from keras_googlenet.export.convert import convert_onnx, convert_tflite, write_savedmodel
from keras_googlenet.export.experimental import optimize_for_inference
from keras_googlenet.export.formats import (
    DEFAULT_BOUNDS,
    DEFAULT_INT8_IO,
    FORMATS,
    MIN_ONNX_OPSET,
    check_destination,
    check_name,
    validate_export_arguments,
)
from keras_googlenet.export.publish import (
    discard_stage,
    is_disk_full,
    path_size,
    publish,
    remove_path,
    replace_owned,
    unwritable,
    write_json_atomic,
)
from keras_googlenet.export.report import (
    ArtifactResult,
    ExportError,
    ExportReport,
    format_verification,
    log_progress,
)
from keras_googlenet.export.source import _take_images, load_source, with_preprocessing
from keras_googlenet.export.tflite_gpu import gpu_delegate_report
from keras_googlenet.export.verify import _reference, verify_artifact
from keras_googlenet.model_card import (
    CARD_IN_SAVEDMODEL,
    CARD_SUFFIX,
    card_path_for,
    has_preprocessing_layer,
    preprocessing_card,
)


class _BoundMissedError(Exception):
    pass


@dataclasses.dataclass
class _Plan:
    """What the export of every format shares: the models, the base card, the options."""

    model: keras.Model  # the float32 inference model: the verification reference
    exported_model: keras.Model  # the same, or its `optimize_for_inference` rewrite
    base_card: dict
    out_dir: str
    name: str
    options: dict  # export_model's keyword arguments that act per format
    bounds: dict
    reference: dict | None = None
    representative: object = None
    work_dir: str = ""
    stage_dir: str = ""  # where every artefact and card is written before publishing
    swap: bool = False  # whether the stage replaces `out_dir` whole (else unit by unit)
    staged: dict = dataclasses.field(default_factory=dict)  # format -> verified paths
    created: set = dataclasses.field(default_factory=set)  # names this export put in the stage
    pixel_model: keras.Model | None = None
    conversion_savedmodels: dict = dataclasses.field(default_factory=dict)

    def in_model(self, fmt):
        """Whether `fmt`'s artefact has the preprocessing inside (takes RGB pixels)."""
        option = self.options
        return (has_preprocessing_layer(self.model) or option["include_preprocessing"]
                or (fmt == "tflite-int8" and option["int8_io"] == "uint8"))

    def model_for(self, fmt):
        """The Keras model behind `fmt`'s artefact: scaled input, or pixels."""
        if not self.in_model(fmt):
            return self.exported_model
        if has_preprocessing_layer(self.model):
            return self.model
        if self.pixel_model is None:
            self.pixel_model = with_preprocessing(self.exported_model,
                                                  self.base_card["preprocessing"]["mode"])
        return self.pixel_model


def export_model(
    source,
    out_dir,
    formats=None,
    *,
    name=None,
    input_size=None,
    calibration_data=None,
    calibration_steps=200,
    int8_io=DEFAULT_INT8_IO,
    include_preprocessing=False,
    labels=None,
    tflite_metadata=True,
    author=None,
    license=None,
    uint8_signature=True,
    verify=True,
    verification_data=None,
    verification_samples=512,
    bounds=None,
    opset=MIN_ONNX_OPSET,
    optimize=False,
    strict=True,
    verbose=True,
):
    """Export the float32 inference model of `source` to each format, verified.

    Args:
        source: a `.keras` file (training or inference model), a run directory
            (`inference.keras` or `model.keras`, with `config.json`, `labels.txt`), or a
            `keras.Model`.
        out_dir: destination directory (created; not a symbolic link). Everything is
            staged beside it and swapped in once every format is done; its other files
            are kept (docs/export.md, "Publishing"). Artefacts are named
            `{name}_savedmodel/`, `{name}_fp32.tflite`, `{name}_fp16.tflite`,
            `{name}_dynamic.tflite`, `{name}_int8.tflite`, `{name}.onnx`, each with a
            model card `<artefact>.json`.
        formats: a list (or comma-separated string) from `FORMATS`. Default: every
            float format, plus `"tflite-int8"` when `calibration_data` is given.
        name: base name of the artefacts (default: the model's name).
        input_size: fixes the input size of a model built with `input_shape=(None,
            None, 3)` (default: `config.json`'s `input_size`).
        calibration_data: representative images for full-integer int8: preprocessed
            float32 images, an `(images, labels)` tuple, a `tf.data.Dataset` or an
            iterable of batches (uint8 pixels are resized and scaled for you), or a
            callable usable directly as the converter's `representative_dataset`.
        calibration_steps: how many images (one per converter step) to calibrate on.
        int8_io: input/output type of the full-int8 model: `"uint8"` (default; what
            MediaPipe and the TFLite Task Library accept, fed raw pixels: the
            preprocessing is put inside that artefact), `"int8"` or `"float32"`
            (integer internals with a float interface).
        include_preprocessing: put the variant's preprocessing inside every exported
            model (as `GoogLeNet(include_preprocessing=True)` does), so that they all
            take RGB pixels in [0, 255]. A model built that way keeps it regardless.
        labels: class names (a list, or the path of a text file with one per line);
            default: the run's `labels.txt`, else ImageNet's names for 1000 classes,
            else the class indices. A count that differs from the model's classes is
            a `ValueError` before any conversion.
        tflite_metadata: write TFLite Metadata into every `.tflite` (name, version,
            input normalization, value ranges, the labels as `labels.txt`), which
            MediaPipe Tasks, the TFLite Task Library and Android Studio read.
        author, license: recorded in the cards and the TFLite metadata.
        uint8_signature: add the SavedModel signature `serving_uint8` that takes uint8
            images of any size and resizes and scales them in the graph.
        verify: compare every artefact with Keras before publishing it (default on).
        verification_data: real validation images (same forms as `calibration_data`;
            labels, when present, add accuracy figures). Without them, parity is
            checked on random inputs and the top-1 agreement bounds of the quantized
            formats are reported but not enforced.
        verification_samples: at most this many verification images are used.
        bounds: per-format overrides of `DEFAULT_BOUNDS`.
        opset: ONNX opset (>= 17).
        optimize: export `optimize_for_inference(model)` (BatchNorm folded into the
            convs, the 1x1 convs that read the same input merged into one). Same math;
            verification compares against the unmodified model. Off by default: the
            TFLite converter and onnxruntime already fold BatchNorm, and merging the 1x1
            convs measured no faster on a 2-core CPU (docs/export.md).
        strict: raise `ExportError` at the end when any format failed (after trying
            them all). With `strict=False` the report says what failed.
        verbose: progress on stderr.

    Returns:
        An `ExportReport` (`report["tflite-int8"].verification`, `.summary()`).

    Raises:
        ValueError: bad arguments (unknown format, int8 without calibration data, a
            `name` with a path, a symlinked `out_dir`, ...), checked before anything is
            written.
        FileNotFoundError: `source` does not exist.
        ExportError: with `strict`, a conversion failed or a bound was missed; nothing
            was published for that format and an existing artefact was kept.
    """
    check_destination(source, out_dir, name)
    formats = validate_export_arguments(formats, calibration_data, calibration_steps, int8_io,
                                        opset, verification_samples)
    all_bounds = _merged_bounds(bounds)
    if not isinstance(include_preprocessing, bool):
        raise ValueError("`include_preprocessing` must be True or False; received "
                         f"{include_preprocessing!r}.")
    explicit_labels = read_labels(labels) if labels is not None else None
    options = {"include_preprocessing": include_preprocessing, "int8_io": int8_io,
               "opset": opset, "uint8_signature": uint8_signature,
               "tflite_metadata": tflite_metadata, "verify": verify, "verbose": verbose}
    plan = _plan(source, out_dir, name, input_size, explicit_labels, author, license,
                 optimize, options, all_bounds)
    if "tflite-int8" in formats:
        plan.representative = _representative(plan, calibration_data, calibration_steps)
    if verify:
        log_progress(verbose, "[export] computing Keras reference outputs")
        plan.reference = _reference(plan.model, plan.base_card["output"]["activation"],
                                    verification_data, verification_samples)
    # Everything is checked: the first byte is written now, in the staging directory.
    plan.stage_dir, plan.swap = _staging(plan.out_dir, plan.name)
    plan.work_dir = tempfile.mkdtemp(prefix="googlenet-export-")
    try:
        results = [_export_one(plan, fmt) for fmt in formats]
        _publish_all(plan, results)
    finally:
        shutil.rmtree(plan.work_dir, ignore_errors=True)
        _discard_stage(plan)
    report = ExportReport(out_dir=plan.out_dir, results=results)
    if strict and not report.ok:
        failed = [r.format for r in results if not r.ok]
        raise ExportError(
            f"export failed for {failed}; nothing was written for them.\n{report.summary()}",
            report,
        )
    return report


def _merged_bounds(bounds):
    """`DEFAULT_BOUNDS` per format with the caller's overrides on top."""
    all_bounds = {fmt: dict(DEFAULT_BOUNDS.get(fmt, {})) for fmt in FORMATS}
    for fmt, override in (bounds or {}).items():
        if fmt not in FORMATS:
            raise ValueError(f"`bounds` has an unknown format {fmt!r}; allowed: {list(FORMATS)}.")
        all_bounds[fmt].update(override)
    return all_bounds


def _plan(source, out_dir, name, input_size, explicit_labels, author, license, optimize,
          options, bounds):
    """Load the source, fill the base card, and apply the optional graph rewrites."""
    verbose = options["verbose"]
    log_progress(verbose, "[export] loading "
                          f"{source if not hasattr(source, 'name') else source.name}")
    model, base_card = load_source(source, input_size=input_size)
    base_card["labels"] = _resolve_labels(explicit_labels, source, base_card, verbose)
    for key, value in (("author", author), ("license", license)):
        if value is not None:
            base_card[key] = str(value)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if name is None:  # the model's own name must be a plain file name too
        check_name(out_dir, model.name)
    exported_model = model
    base_card["graph_rewrites"] = []
    if optimize:
        log_progress(verbose, "[export] graph rewrites: fold BatchNorm, merge sibling 1x1 convs")
        exported_model = optimize_for_inference(model)
        base_card["graph_rewrites"] = ["fold_batch_norm", "merge_1x1_convs"]
    return _Plan(model=model, exported_model=exported_model, base_card=base_card,
                 out_dir=out_dir, name=name or model.name, options=options, bounds=bounds)


def _representative(plan, calibration_data, calibration_steps):
    """The int8 converter's `representative_dataset`, from `calibration_data`."""
    if callable(calibration_data) and not hasattr(calibration_data, "__iter__"):
        return calibration_data
    size = tuple(plan.model.input_shape[1:3])
    calib_x, _ = _take_images(calibration_data, calibration_steps, size, "calibration_data")
    plan.base_card["calibration"] = {"images": int(len(calib_x))}
    if plan.in_model("tflite-int8"):
        # Pixels, with one 0..255 gradient so that the input range calibrates to
        # exactly [0, 255]: a uint8 input then carries the pixels unchanged.
        gradient = np.broadcast_to(np.linspace(-1.0, 1.0, size[1], dtype="float32")
                                   [None, None, :, None], (1, *size, 3))
        calib_x = (np.concatenate([calib_x, gradient]) + 1.0) * 127.5

    def representative():
        for i in range(len(calib_x)):
            yield [calib_x[i:i + 1]]

    return representative


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
        flatbuffer = _convert(plan, fmt, staged)
        card = _artifact_card(plan, fmt, target, staged, flatbuffer, result)
        if fmt == "savedmodel":  # the directory carries its card too
            write_json_atomic(card, os.path.join(staged, CARD_IN_SAVEDMODEL))
        write_json_atomic(card, staged_card)
        result.card = card
        plan.staged[fmt] = (staged, staged_card, target)
        if fmt == "savedmodel":  # verified: the TFLite converter reuses it from the stage
            plan.conversion_savedmodels.setdefault(plan.in_model(fmt), staged)
        log_progress(verbose, f"[export] {fmt}: ok, {card['file_size_bytes'] / 1e6:.2f} MB; "
                              f"{format_verification(result.verification)}")
        gpu = card.get("gpu_delegate")
        if gpu is not None and not gpu["compatible"]:
            result.warnings.append(gpu_warning(gpu))
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
    key = plan.in_model(fmt)
    if key not in plan.conversion_savedmodels:
        plan.conversion_savedmodels[key] = os.path.join(
            plan.work_dir, f"savedmodel_{'pixels' if key else 'scaled'}")
        write_savedmodel(plan.model_for(fmt), plan.conversion_savedmodels[key],
                         uint8_signature=False)
    return convert_tflite(plan.conversion_savedmodels[key], fmt,
                          plan.representative if fmt == "tflite-int8" else None,
                          int8_io=options["int8_io"])


def _artifact_card(plan, fmt, target, tmp, flatbuffer, result):
    """The card of `fmt`'s artefact; writes the TFLite bytes and verifies against Keras."""
    options = plan.options
    verbose = options["verbose"]
    _, precision = FORMATS[fmt]
    card = _card(plan.base_card, fmt, precision, target, options["opset"], options["int8_io"],
                 options["uint8_signature"])
    card["preprocessing"] = preprocessing_card(plan.in_model(fmt),
                                               plan.base_card["preprocessing"]["mode"])
    if fmt.startswith("tflite"):
        if options["tflite_metadata"]:
            log_progress(verbose, f"[export] {fmt}: writing TFLite metadata")
            flatbuffer = _with_tflite_metadata(flatbuffer, card)
            card["tflite_metadata"] = _metadata_summary(card)
        card["gpu_delegate"] = gpu_delegate_report(flatbuffer)
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
    card["verification"] = None
    if not options["verify"]:
        _fill_io(card, fmt, None, path=tmp)
    else:
        log_progress(verbose, f"[export] {fmt}: verifying against Keras")
        predictor = _predictor_for(fmt, tmp, card)
        _fill_io(card, fmt, predictor)
        uint8_path = tmp if fmt == "savedmodel" and options["uint8_signature"] else None
        result.verification = verify_artifact(predictor, plan.reference, fmt,
                                              plan.bounds[fmt], savedmodel_path=uint8_path)
        del predictor
        card["verification"] = result.verification
        if not result.verification["passed"]:
            missed = [c for c in result.verification["checks"]
                      if c["enforced"] and not c["passed"]]
            raise _BoundMissedError("verification bound missed: " + ", ".join(
                f"{c['metric']}={c['value']:.6g} (bound {c['bound']})" for c in missed))
    card["file_size_bytes"] = path_size(tmp)
    return card


def _staging(out_dir, name):
    """(the directory every artefact is staged in, whether it then replaces `out_dir` whole).

    A new `out_dir`, or one holding only exports, is staged in a sibling that is swapped
    in with one rename (`replace_owned`), so that all the artefacts and their cards appear
    at once. A directory with files of the user's own is never replaced whole (its inode,
    owner and ACLs stay): its artefacts are staged in a sibling too, then published unit by
    unit, each artefact then its card. Only where no sibling can be renamed in (a mount
    point, a parent we cannot write) is the stage a hidden directory inside `out_dir`.
    """
    parent = os.path.dirname(out_dir)
    prefix = f".{os.path.basename(out_dir)}.export-"
    if _swappable(out_dir):
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(dir=parent, prefix=prefix), True
    if not os.path.ismount(out_dir) and unwritable(parent) is None:
        return tempfile.mkdtemp(dir=parent, prefix=prefix), False
    return tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.export-"), False


def _swappable(out_dir):
    if not os.path.isdir(out_dir):
        return True
    if not _holds_only_exports(out_dir):
        # A directory of the user's own (a home, a shared folder): never replaced whole,
        # which would change its inode, owner and ACLs under everyone using it.
        return False
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was deleted
        cwd = ""
    real = os.path.realpath(out_dir)
    if os.path.ismount(out_dir) or cwd == real or cwd.startswith(real.rstrip(os.sep) + os.sep):
        return False
    return unwritable(os.path.dirname(out_dir)) is None


def _holds_only_exports(out_dir):
    """Whether every entry of `out_dir` is an artefact or card an export writes."""
    suffixes = tuple(suffix for suffix, _ in FORMATS.values())
    suffixes += tuple(suffix + CARD_SUFFIX for suffix in suffixes) + (".keras", ".keras.json")
    return all(name.endswith(suffixes) for name in os.listdir(out_dir))


def _publish_all(plan, results):
    """Publish every verified artefact with its card: one swap of the directory, or (see
    `_staging`) each artefact then its card, right after each other."""
    done = [r for r in results if r.format in plan.staged]
    if not done:
        return
    if plan.swap:
        owned = {os.path.basename(path) for fmt in plan.staged
                 for path in (plan.staged[fmt][2], card_path_for(plan.staged[fmt][2]))}
        # The old artefacts of these formats go; everything else in out_dir is kept.
        plan.created = owned  # from now on the stage may also hold the user's files
        replace_owned(plan.stage_dir, plan.out_dir, owned=owned.__contains__)
    else:
        for result in done:
            staged, staged_card, target = plan.staged[result.format]
            publish(staged, target)
            publish(staged_card, card_path_for(target))
    for result in done:
        result.path = plan.staged[result.format][2]
        result.card_path = card_path_for(result.path)
    log_progress(plan.options["verbose"], f"[export] published {len(done)} artefact(s) with "
                 f"their cards in {plan.out_dir}")


def _discard_stage(plan):
    """Remove what the export staged and did not publish (see `discard_stage`)."""
    if not discard_stage(plan.stage_dir, plan.created):
        log_progress(True, f"[export] WARNING: kept {plan.stage_dir}: it holds files of "
                           f"{plan.out_dir} that could not be moved back")
