"""googlenet-tune: search GoogLeNet's Inception widths with KerasTuner under a compute budget."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from keras_googlenet_training.cli import (
    DefaultsFormatter,
    add_dataset_arguments,
    add_debug_flag,
    drop_options,
    quiet_start,
    require_extras,
)
from keras_googlenet_training.launcher import interrupted_status, sigterm_as_interrupt

EXIT_BAD_ARGUMENTS = 2
EXIT_SEARCH_FAILED = 3  # no trial produced a score, or the trials kept crashing
TUNER_CHOICES = ("random", "bayesian", "hyperband")
LATENCY_CHOICES = ("float32", "int8")


def _floats(text):
    """'0.5,0.75,1' -> (0.5, 0.75, 1.0)."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def _value_or_range(text):
    """'0.4' -> (0.4,) fixed; '0.2:0.5' -> (0.2, 0.5) searched."""
    try:
        values = tuple(float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got {text!r}")
    return values


def _variants(text):
    from keras_googlenet.spec import VARIANTS

    values = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in values if v not in VARIANTS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated variants from {sorted(VARIANTS)}, got {text!r}"
        )
    return values


def _count(text):
    """'300e6', '1.5G', '800M', '5k' -> float."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1.0)
    try:
        return float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 300e6 or 300M, got "
                                         f"{text!r}") from None


def build_parser():
    from keras_googlenet_training.precision import PRECISIONS

    p = argparse.ArgumentParser(
        prog="googlenet-tune",
        description="Search GoogLeNet's Inception widths (per-stage multipliers, bottleneck "
        "ratios) with KerasTuner; candidates over the compute budget are rejected before "
        "training. Writes <directory>/<project-name>/results.{csv,md}, pareto.png and best/. "
        "Re-run the same command to continue an interrupted search.",
        formatter_class=DefaultsFormatter,
    )
    search = p.add_argument_group("search")
    search.add_argument("--tuner", default="random", choices=TUNER_CHOICES)
    search.add_argument("--max-trials", type=int, default=10,
                        help="trials to train (rejected candidates do not count); a cap for "
                        "hyperband")
    search.add_argument("--epochs", type=int, default=2,
                        help="epochs per trial (hyperband: for the longest-trained models)")
    search.add_argument("--steps-per-epoch", type=int, default=None,
                        help="cap on training steps per epoch (default: one pass)")
    search.add_argument("--validation-steps", type=int, default=None,
                        help="cap on validation batches (default: the whole split)")
    search.add_argument("--batch-size", type=int, default=32, help="per replica")
    search.add_argument("--seed", type=int, default=0)

    space = p.add_argument_group("search space")
    space.add_argument("--stage-multipliers", type=_floats, default=(0.5, 0.75, 1.0),
                       help="choices of the width multiplier of each of stages 3, 4, 5")
    space.add_argument("--reduce-ratios", type=_floats, default=(0.5, 0.75, 1.0),
                       help="choices of the factor on the #3x3/#5x5 reduce columns "
                       "(1 = the paper's bottlenecks)")
    space.add_argument("--variants", type=_variants, default=("v1_bn",),
                       help="comma-separated variants to search")
    space.add_argument("--width-multiplier", type=float, default=1.0,
                       help="scales the whole network (stem included) after the search's widths")
    space.add_argument("--dropout", type=_value_or_range, default=(0.4,),
                       help="a rate, or MIN:MAX to search")
    space.add_argument("--learning-rate", type=_value_or_range, default=(2e-3,),
                       help="Adam's rate, or MIN:MAX to search (log scale)")
    space.add_argument("--no-aux", dest="aux", action="store_false",
                       help="train without the auxiliary heads (allows inputs down to 32 px)")

    budget = p.add_argument_group("compute budget (checked before training)")
    budget.add_argument("--max-macs", type=_count, default=None,
                        help="multiply-adds per image of the inference model, e.g. 300M")
    budget.add_argument("--max-params", type=_count, default=None,
                        help="parameters of the inference model, e.g. 2.5M")
    budget.add_argument("--max-latency-ms", type=float, default=None,
                        help="median TFLite latency of one image, measured on this machine")
    budget.add_argument("--latency-precision", default="float32", choices=LATENCY_CHOICES)
    budget.add_argument("--latency-threads", type=int, default=1,
                        help="TFLite interpreter threads for the latency measurement")

    data = p.add_argument_group("data")
    add_dataset_arguments(data)
    data.add_argument("--input-size", type=int, default=None,
                      help="square input side (default: 224, 80 for digits)")

    hardware = p.add_argument_group("hardware and distribution")
    hardware.add_argument("--precision", default="auto", choices=PRECISIONS)
    hardware.add_argument("--replicas", type=int, default=None,
                          help="MirroredStrategy replicas per trial (the tuner's "
                          "distribution_strategy; on a CPU: N logical devices)")
    hardware.add_argument("--workers", type=int, default=0,
                          help="run a distributed search here: a chief and N workers on "
                          "127.0.0.1 (KerasTuner's protocol)")

    out = p.add_argument_group("output")
    out.add_argument("--directory", default="tuning")
    out.add_argument("--project-name", default="googlenet")
    out.add_argument("--overwrite", action="store_true",
                     help="start afresh instead of continuing: the new search is built beside "
                     "the project and replaces it only once it has finished (your own files "
                     "in the project are kept)")
    add_debug_flag(p)
    return p


def main(argv=None):
    quiet_start()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    require_extras("googlenet-tune", "tune", "train")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from keras_googlenet.errors import is_refusal, refuse_or_report
    from keras_googlenet_training.oracle_server import distributed_role
    from keras_googlenet_training.tune import check_settings, run_search
    from keras_googlenet_training.tune_config import (
        SearchFailedError,
        TuneConfig,
        project_dir,
        work_dir,
    )
    from keras_googlenet_training.tune_launch import launch_local

    settings = {k: v for k, v in vars(args).items() if k not in ("workers", "debug")}
    config = TuneConfig(**settings)
    log_dir = None
    try:
        with sigterm_as_interrupt():
            if args.workers < 0:
                raise ValueError(f"`--workers` must be >= 0; received {args.workers}.")
            config = check_settings(config, distributed_role())
            log_dir = work_dir(config)
            if args.workers:
                child_argv = drop_options(argv, with_value=("--workers",))
                return launch_local(child_argv, args.workers, args.directory,
                                    args.project_name, overwrite=args.overwrite)
            result = run_search(config)
    except SearchFailedError as error:
        kept = f" The search in {project_dir(config)} is unchanged: --overwrite " \
            "replaces it only with a search that produced a score." if args.overwrite else ""
        print(f"error: {error}{kept}", file=sys.stderr)
        return EXIT_SEARCH_FAILED
    except KeyboardInterrupt as error:
        kept = " (the old search is kept as it was until the replacement finishes)" \
            if args.overwrite else ""
        print(f"interrupted: re-run the same command to continue the search{kept}",
              file=sys.stderr)
        return interrupted_status(error)
    except OSError as error:
        if is_refusal(error):
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_ARGUMENTS
        from keras_googlenet.publish import is_disk_full

        cause = "no space left on device" if is_disk_full(error) else (
            error.strerror or str(error))
        print(f"error: cannot write {error.filename or args.directory}: {cause} (--directory "
              f"{args.directory}); fix it and re-run the same command to continue the search.",
              file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    except Exception as error:  # noqa: BLE001 - a refusal, or a bug reported as one
        return refuse_or_report("googlenet-tune", error, log_dir=log_dir, debug=args.debug)
    if result.role != "worker":
        print(json.dumps({"best": {k: v for k, v in result.best.items() if k != "widths"},
                          "trials_run": result.trials_run,
                          "paths": {k: v for k, v in result.paths.items()
                                    if k != "markdown_text"}}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
