"""`googlenet-export`: a trained GoogLeNet to SavedModel / TFLite / ONNX, each verified.

A thin shell over `keras_googlenet.export.export_model`; this module only turns dataset
specs (`digits`, `tfds:NAME`, `folder:PATH`, as in `googlenet-train --dataset`) into
calibration and verification images with `keras_googlenet_training.data`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from keras_googlenet_training.cli import (
    DefaultsFormatter,
    add_debug_flag,
    quiet_start,
    require_extras,
)
from keras_googlenet_training.launcher import interrupted_status, sigterm_as_interrupt

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "googlenet-export"
KERAS_HUB_FORMAT = "keras-hub"  # a preset directory, by keras_googlenet.hub (optional extra)


def build_parser():
    from keras_googlenet.export.formats import (
        DEFAULT_INT8_IO,
        FORMATS,
        INT8_IO_TYPES,
        MIN_ONNX_OPSET,
    )

    p = argparse.ArgumentParser(
        prog="googlenet-export",
        description="Export the float32 inference model of a .keras file or run directory to "
        "SavedModel, TFLite and ONNX, verify each artefact against Keras, and write a model "
        "card <artefact>.json next to it. Exit status: 0 ok, 1 a conversion failed or a "
        "verification bound was missed, 2 bad arguments.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("source", metavar="SRC", help="a .keras file or a training run directory")
    p.add_argument("--formats", default=None,
                   help=f"comma-separated subset of {','.join(FORMATS)} (default: every float "
                   "format, plus tflite-int8 with --calibration-data); or keras-hub alone: a "
                   "KerasHub preset directory at --out (needs keras-googlenet[hub])")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--name", default=None,
                   help="artefact base name (default: the model's name); with keras-hub, the "
                   "preset is written to OUT/NAME")
    p.add_argument("--input-size", type=int, default=None,
                   help="fix the input size of a model built for any size")
    calib = p.add_argument_group("quantization")
    calib.add_argument("--calibration-data", metavar="DATASET", default=None,
                       help="digits | tfds:NAME | folder:PATH: training images for full-int8 "
                       "calibration")
    calib.add_argument("--calibration-steps", type=int, default=200,
                       help="calibration images (one per converter step)")
    calib.add_argument("--int8-io", choices=INT8_IO_TYPES, default=DEFAULT_INT8_IO,
                       help="input/output type of the full-int8 model; uint8 is what MediaPipe "
                       "and the TFLite Task Library accept (the model then takes raw pixels)")
    calib.add_argument("--int8-float-layers", metavar="NAME,...", default=None,
                       help="layers the full-int8 model keeps in float, by the names its "
                       "export report lists (needs --int8-io int8 or float32)")
    mobile = p.add_argument_group("mobile (TFLite)")
    mobile.add_argument("--include-preprocessing", action="store_true",
                        help="put the preprocessing inside every exported model, so that each "
                        "takes RGB pixels in [0, 255] (TFLite metadata then says mean 0, std 1)")
    mobile.add_argument("--labels", metavar="FILE", default=None,
                        help="class names, one per line (default: the run's labels.txt); "
                        "also for keras-hub")
    mobile.add_argument("--tflite-metadata", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="write TFLite Metadata (normalization, labels) into every .tflite, "
                        "as MediaPipe's ImageClassifier needs")
    mobile.add_argument("--author", default=None, help="author, for the cards and metadata")
    mobile.add_argument("--license", default=None, help="license, for the cards and metadata")
    ver = p.add_argument_group("verification")
    ver.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                     help="compare every artefact with Keras before writing it")
    ver.add_argument("--verification-data", metavar="DATASET", default=None,
                     help="labelled validation images for the accuracy-drop bounds (default: "
                     "the run's dataset from config.json, else --calibration-data)")
    ver.add_argument("--verification-samples", type=int, default=512,
                     help="at most this many validation images")
    ver.add_argument("--max-accuracy-drop", metavar="PTS", type=float, default=None,
                     help="top-1 accuracy drop below Keras, in percentage points, that every "
                     "format may show (default: 0.1 float formats, 1 dynamic and int8)")
    p.add_argument("--data-dir", default=None, help="TFDS data directory")
    p.add_argument("--uint8-signature", action=argparse.BooleanOptionalAction, default=True,
                   help="add the SavedModel signature serving_uint8 (raw pixels, any size)")
    p.add_argument("--opset", type=int, default=MIN_ONNX_OPSET, help="ONNX opset")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    add_debug_flag(p)
    return p


def _run_config(source):
    from keras_googlenet.model_card import resolve_source

    _, run_info = resolve_source(source)
    return run_info.get("config") or {}


def _split(spec, split, config, data_dir):
    """Unbatched (uint8 image, label) tf.data of one split of a dataset spec: the export
    crops, resizes and scales the images as the training pipeline evaluates them."""
    # lazy: the library never imports training/
    from keras_googlenet_training.data import load_dataset

    same_dataset = spec == config.get("dataset")
    splits = load_dataset(
        spec,
        data_dir=data_dir or (config.get("data_dir") if same_dataset else None),
        seed=config.get("seed", 0) if same_dataset else 0,
        val_fraction=config.get("val_fraction", 0.2) if same_dataset else 0.2,
    )
    return getattr(splits, split)


def main(argv=None):
    quiet_start()
    parser = build_parser()
    args = parser.parse_args(argv)
    if KERAS_HUB_FORMAT in (args.formats or "").split(","):
        return _keras_hub_preset(args)
    require_extras("googlenet-export", "export")
    try:
        with sigterm_as_interrupt():  # SIGTERM cleans up its staging as Ctrl-C does
            report = _export(args)
    except KeyboardInterrupt as error:
        print(f"{PROG}: interrupted; nothing half-written was published, the previous "
              "artefacts are as they were", file=sys.stderr)
        return interrupted_status(error)
    except Exception as error:  # noqa: BLE001 - sorted into refusals and internal errors
        return _error_status(error, args)

    print(report.summary(), file=sys.stderr)
    if args.json:
        from keras_googlenet.publish import json_default

        print(json.dumps(_report_json(report), indent=2, default=json_default))
    if not report.ok:
        failed = [r.format for r in report.results if not r.ok]
        print(f"{PROG}: FAILED: {', '.join(failed)} (nothing written for them)",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _error_status(error, args):
    """Exit 2 and one line for a bad argument or input, or an `OSError` (its path and the
    system's reason: read-only, full, permission denied); anything else is an internal
    error with its traceback in a log file."""
    from keras_googlenet.errors import describe_os_error, is_refusal, refuse_or_report

    if isinstance(error, OSError) and not is_refusal(error):
        from keras_googlenet.publish import is_disk_full

        cause = describe_os_error(error, args.out)
        if is_disk_full(error) and "space" not in cause:
            cause += " (no space left)"
        print(f"{PROG}: error: {cause}", file=sys.stderr)
        return EXIT_USAGE
    return refuse_or_report(PROG, error, log_dir=args.out, debug=args.debug)


def _export(args):
    """Check the arguments, load the calibration and verification images, export."""
    from keras_googlenet.export import export_model
    from keras_googlenet.export.formats import (
        check_destination,
        check_int8_float_layers,
        validate_export_arguments,
    )
    from keras_googlenet.export.source import is_quantize_aware_source
    from keras_googlenet.export.verify import check_max_accuracy_drop

    check_destination(args.source, args.out, args.name)
    config = _run_config(args.source)
    # Fail on usage errors before loading any data.
    formats = validate_export_arguments(
        args.formats, args.calibration_data, args.calibration_steps, args.int8_io,
        args.opset, args.verification_samples,
        learned_ranges=is_quantize_aware_source(args.source))
    check_max_accuracy_drop(args.max_accuracy_drop)
    check_int8_float_layers(args.int8_float_layers, formats, args.int8_io)
    calibration = verification = None
    if args.calibration_data and "tflite-int8" in formats:
        print(f"[export] calibration images: {args.calibration_data} (train split)",
              file=sys.stderr)
        train = _split(args.calibration_data, "train", config, args.data_dir)
        calibration = train.shuffle(2048, seed=0)
    if args.verify:
        spec = args.verification_data or config.get("dataset") or args.calibration_data
        if spec:
            print(f"[export] verification images: {spec} (validation split)",
                  file=sys.stderr)
            verification = _split(spec, "val", config, args.data_dir)
        else:
            print("[export] no validation images (no --verification-data, no run "
                  "config): parity on random inputs; agreement bounds not enforced",
                  file=sys.stderr)

    return export_model(
        args.source, args.out, formats, name=args.name, input_size=args.input_size,
        calibration_data=calibration, calibration_steps=args.calibration_steps,
        int8_io=args.int8_io, include_preprocessing=args.include_preprocessing,
        labels=args.labels, tflite_metadata=args.tflite_metadata, author=args.author,
        license=args.license, uint8_signature=args.uint8_signature, verify=args.verify,
        verification_data=verification, verification_samples=args.verification_samples,
        max_accuracy_drop=args.max_accuracy_drop, int8_float_layers=args.int8_float_layers,
        opset=args.opset, strict=False,
    )


def _keras_hub_preset(args):
    """`--formats keras-hub`: `--out` becomes a KerasHub preset (`hub.write_preset`)."""
    if args.formats.strip() != KERAS_HUB_FORMAT:
        print(f"googlenet-export: error: {KERAS_HUB_FORMAT} is written alone (--out is the "
              "preset directory); export the other formats with a second command",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        path = _write_preset(args)
    except ImportError as error:  # the hub extra is missing: our own one-line message
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the previous preset is as it was", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - sorted into refusals and internal errors
        return _error_status(error, args)
    with open(os.path.join(path, "metadata.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    print(f"KerasHub preset: {path} ({metadata['task_parameter_count']:,} parameters; "
          f"verification: {metadata['verification']})", file=sys.stderr)
    if args.json:
        print(json.dumps({"preset": path, "metadata": metadata}, indent=2))
    return EXIT_OK


def _write_preset(args):
    """The preset at `--out` (or `--out/--name`), with `--labels` in its metadata."""
    from keras_googlenet.export.cards import read_labels
    from keras_googlenet.export.formats import check_destination

    preset_dir = args.out
    if args.name is not None:  # as for the artefacts: one plain name inside --out
        check_destination(args.source, args.out, args.name)
        preset_dir = os.path.join(args.out, args.name)
    labels = read_labels(args.labels) if args.labels is not None else None
    from keras_googlenet.hub import write_preset  # after the checks: imports keras_hub

    return write_preset(args.source, preset_dir, image_size=args.input_size, labels=labels,
                        verify=args.verify)


def _report_json(report):
    return {
        "out_dir": report.out_dir,
        "ok": report.ok,
        "artifacts": [
            {"format": r.format, "ok": r.ok, "path": r.path, "card": r.card_path,
             "file_size_bytes": r.card["file_size_bytes"] if r.card else None,
             "verification": r.verification, "int8_layers": r.int8_layers,
             "error": r.error, "warnings": r.warnings,
             "seconds": round(r.seconds, 2)}
            for r in report.results
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
