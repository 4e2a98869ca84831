"""`googlenet-predict`: classify images with any exported GoogLeNet artefact.

A thin shell over `keras_googlenet.runtime.load_predictor`: `.keras`, a SavedModel
directory, `.tflite` or `.onnx`; labels, input size and preprocessing come from the
artefact's model card.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from keras_googlenet_training.cli import (
    DefaultsFormatter,
    add_debug_flag,
    quiet_start,
    require_extras,
)

PROG = "googlenet-predict"
EXIT_OK, EXIT_SOME_IMAGES_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Print the top-k classes of each image. Exit status: 0 ok, 1 some images "
        "could not be read (the others are still classified) or an internal error, 2 bad "
        "arguments or model.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any PIL format)")
    p.add_argument("--model", required=True,
                   help="a .keras file, SavedModel directory, .tflite or .onnx file")
    p.add_argument("--top-k", type=int, default=5, help="classes to print per image")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for TFLite / onnxruntime")
    p.add_argument("--batch-size", type=int, default=32, help="images per inference call")
    add_debug_flag(p)
    return p


def predict_files(predictor, paths, top_k=5, batch_size=32):
    """Per path `{"image", "predictions": [{"label", "index", "probability"}]}` or
    `{"image", "error"}`; unreadable files do not stop the others."""
    results, ready = [], []
    for path in paths:
        try:
            ready.append((len(results), predictor.preprocess_images([path])[0]))
            results.append({"image": path})
        except Exception as error:  # PIL raises many types for bad files
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            results.append({"image": path, "error": f"cannot read image: {reason}"})
    for start in range(0, len(ready), batch_size):
        chunk = ready[start:start + batch_size]
        probs = predictor.predict(np.stack([x for _, x in chunk]))
        for (index, _), row in zip(chunk, probs, strict=True):
            results[index]["predictions"] = predictor.top_k(row, top_k)
    return results


def _check_numbers(args):
    """A `ValueError` naming the flag of a number that is not a positive int."""
    from keras_googlenet.checks import positive_int

    for flag, value in (("--top-k", args.top_k), ("--batch-size", args.batch_size),
                        ("--threads", args.threads)):
        if value is not None:  # --threads: None lets the runtime choose
            positive_int(flag, value)


def main(argv=None):
    quiet_start()
    args = build_parser().parse_args(argv)
    require_extras(PROG, "export")  # reads every artefact the export writes
    try:
        _check_numbers(args)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from keras_googlenet.errors import refuse_or_report
    from keras_googlenet.runtime import load_predictor

    try:
        predictor = load_predictor(args.model, num_threads=args.threads)
        if predictor.input_size is None:
            raise ValueError(f"cannot tell the input size of {args.model!r} (no model card).")
        # A refusal here is e.g. the NaN outputs of a corrupt model: no numbers are printed.
        results = predict_files(predictor, args.images, args.top_k, args.batch_size)
    except Exception as error:  # refusals exit 2; anything else is a bug, reported as one
        return refuse_or_report(PROG, error, debug=args.debug)
    failed = [r for r in results if "error" in r]
    if args.json:  # the user's label names as they are, not \u escapes
        print(json.dumps({"model": args.model, "format": predictor.format, "results": results},
                         indent=2, ensure_ascii=False))
    else:
        for r in results:
            if "error" in r:
                continue
            print(r["image"])
            for rank, p in enumerate(r["predictions"], 1):
                print(f"  {rank}. {p['label']:<30} {p['probability']:.4f}")
    for r in failed:
        print(f"{PROG}: {r['image']}: {r['error']}", file=sys.stderr)
    return EXIT_SOME_IMAGES_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
