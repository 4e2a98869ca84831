"""`python -m keras_googlenet summary ...`: the per-block table of a GoogLeNet.

`python -m keras_googlenet convert-torchvision SRC [OUT] [--preset DIR]`: port torchvision's
GoogLeNet weights (a `.pth` state dict, or an `.npz` of it) onto
`GoogLeNet(variant="torchvision")`, as a weights file, a `.keras` model or a KerasHub preset.
"""

import argparse
import os
import sys

from keras_googlenet import errors
from keras_googlenet.spec import VARIANTS

__all__ = ["build_parser", "main", "summary_text"]

PROG = "python -m keras_googlenet"


def summary_text(variant="v1", input_size=224, classes=1000, include_aux=False,
                 width_multiplier=1.0):
    """The Table-1-like profile of a GoogLeNet as text (what the CLI prints)."""
    from keras_googlenet.complexity import format_profile, model_profile
    from keras_googlenet.googlenet import GoogLeNet

    model = GoogLeNet(variant=variant, input_shape=(input_size, input_size, 3), classes=classes,
                      include_aux=include_aux, width_multiplier=width_multiplier)
    title = (f"GoogLeNet variant={variant} input={input_size}x{input_size}x3 classes={classes} "
             f"aux={'yes' if include_aux else 'no'} width_multiplier={width_multiplier}")
    return format_profile(model_profile(model), title=title)


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="print the per-block table (params, MACs)")
    summary.add_argument("--variant", default="v1", choices=sorted(VARIANTS))
    summary.add_argument("--input-size", type=int, default=224)
    summary.add_argument("--classes", type=int, default=1000)
    summary.add_argument("--aux", action="store_true", help="include the auxiliary heads")
    summary.add_argument("--width-multiplier", type=float, default=1.0)
    convert = commands.add_parser(
        "convert-torchvision",
        help="port torchvision's GoogLeNet weights (.pth or .npz) onto variant='torchvision'",
        description="Port a torchvision GoogLeNet state dict (e.g. googlenet-1378be20.pth, "
        "IMAGENET1K_V1) onto GoogLeNet(variant='torchvision'). The ported model expects "
        "preprocess_input(x, variant='torchvision'): RGB scaled to [-1, 1]. Reading a .pth "
        "needs PyTorch (pip install 'keras-googlenet[torch]'); an .npz of the same tensors "
        "does not.")
    convert.add_argument("src", help="torchvision state dict: .pth/.pt (needs PyTorch) or .npz")
    convert.add_argument(
        "out", nargs="?", default=None,
        help="OUT.weights.h5 (load with GoogLeNet(variant='torchvision', weights=OUT)), "
        "OUT.keras (inference model + model card with ImageNet labels for googlenet-predict) "
        "or OUT.npz (the state dict as NumPy, readable without PyTorch). Default: the "
        "weights='imagenet' cache file")
    convert.add_argument(
        "--aux", action="store_true",
        help="also port the aux heads (NOT pretrained in torchvision's IMAGENET1K_V1); load "
        "the result with include_aux=True")
    convert.add_argument("--input-size", type=int, default=224,
                         help="input side of a .keras output (a multiple of 32 keeps parity)")
    convert.add_argument("--debug", action="store_true",
                         help="print the full traceback of an unexpected error")
    convert.add_argument(
        "--preset", metavar="DIR", default=None,
        help="write a KerasHub preset directory instead (or as well, with OUT): load it with "
        "keras_hub.models.ImageClassifier.from_preset(DIR) after `import keras_googlenet.hub`; "
        "needs keras-googlenet[hub]. --input-size is then the resize target of its "
        "preprocessing")
    return parser


def _convert_torchvision(args):
    from keras_googlenet.weights.convert import check_output, convert_torchvision
    from keras_googlenet.weights.imagenet import IMAGENET_WEIGHTS_FILE, cache_file

    if args.aux and (args.out is None or args.preset is not None):
        raise ValueError("--aux needs an OUT path and no --preset: the weights='imagenet' "
                         "cache and a KerasHub preset hold the main classifier only.")
    out = args.out
    # Every destination is checked before anything is read or written.
    if out is not None:
        check_output(out, args.aux)
    elif args.preset is None:
        out = cache_file(IMAGENET_WEIGHTS_FILE)
    if args.preset is not None:
        from keras_googlenet.hub import write_torchvision_preset

        path = write_torchvision_preset(args.src, args.preset, image_size=args.input_size)
        print(f"wrote KerasHub preset {path}; load it with keras_hub.models.ImageClassifier"
              f".from_preset({path!r}) after `import keras_googlenet.hub`")
        if out is None:
            return
    path, report = convert_torchvision(args.src, out, include_aux=args.aux,
                                       input_size=args.input_size)
    if report is None:
        print(f"wrote {path} (the state dict as NumPy arrays)")
    else:
        print(f"wrote {path}: {report.summary()}")
        if path.lower().endswith(".keras"):
            print(f"model card: {path}.json; expects preprocess_input(x, variant='torchvision')")


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "summary":
            print(summary_text(args.variant, args.input_size, args.classes, args.aux,
                               args.width_multiplier))
        elif args.command == "convert-torchvision":
            _convert_torchvision(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing half-written was published", file=sys.stderr)
        return 130
    except ImportError as error:  # PyTorch or the hub extra missing: our own message
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return errors.EXIT_BAD_INPUT
    except Exception as error:  # noqa: BLE001 - sorted into refusals and internal errors
        if isinstance(error, OSError) and not errors.is_refusal(error):
            print(f"{PROG}: error: {errors.describe_os_error(error)}", file=sys.stderr)
            return errors.EXIT_BAD_INPUT
        return errors.refuse_or_report(PROG, error, debug=getattr(args, "debug", False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
