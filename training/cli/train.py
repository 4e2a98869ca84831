"""googlenet-train: train GoogLeNet (with its auxiliary heads) and write a run directory."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from keras_googlenet_training.cli import (
    DefaultsFormatter,
    add_dataset_arguments,
    add_debug_flag,
    drop_options,
    quiet_start,
    require_extras,
)
from keras_googlenet_training.launcher import (
    EXIT_TERMINATED,
    interrupted_status,
    sigterm_as_interrupt,
)

PROG = "googlenet-train"
EXIT_BAD_ARGUMENTS = 2
EXIT_DIVERGED = 3


def build_parser():
    from keras_googlenet.spec import VARIANTS
    from keras_googlenet_training.precision import PRECISIONS

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train GoogLeNet on digits (default, offline), a TFDS dataset or an image "
        "folder; writes saved_models/<run-name>/. Re-run the same command to resume.",
        formatter_class=DefaultsFormatter,
    )
    data = p.add_argument_group("data")
    add_dataset_arguments(data)
    data.add_argument("--download", action="store_true",
                      help="let TFDS download a dataset not prepared in --data-dir (default: "
                      "never touch the network)")
    data.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                      help="random horizontal flips (default: on, off for digits)")
    data.add_argument("--distort", action=argparse.BooleanOptionalAction, default=True,
                      help="photometric distortions")
    data.add_argument("--min-crop-area", type=float, default=None,
                      help="smallest random-crop area fraction (paper 0.08; digits 0.7)")
    data.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                      help="cache decoded images in memory (default: on for digits only)")

    model = p.add_argument_group("model")
    model.add_argument("--variant", default="v1_bn", choices=sorted(VARIANTS))
    model.add_argument("--input-size", type=int, default=None,
                       help="square input side (default: 224, 80 for digits)")
    model.add_argument("--width-multiplier", type=float, default=1.0)
    model.add_argument("--widths", type=json.loads, default=None,
                       help='JSON per-block widths, e.g. \'{"4e": [256,160,320,32,128,128]}\'')
    model.add_argument("--no-aux", dest="aux", action="store_false",
                       help="train without the auxiliary heads")
    model.add_argument("--aux-loss-weight", type=float, default=0.3)
    model.add_argument("--dropout", type=float, default=0.4)
    model.add_argument("--bn-momentum", type=float, default=0.9,
                       help="BatchNorm moving-average momentum (0.9 suits short runs)")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=8,
                     help="float epochs; 0 with --qat-epochs and --init-weights: QAT alone")
    opt.add_argument("--batch-size", type=int, default=64, help="per replica")
    opt.add_argument("--steps-per-epoch", type=int, default=None,
                     help="cap on steps per epoch (default: one pass over the data)")
    opt.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    opt.add_argument("--learning-rate", type=float, default=None,
                     help="peak learning rate (default: 2e-3 adam, 0.05 sgd)")
    opt.add_argument("--schedule", default="cosine", choices=["cosine", "paper", "constant"],
                     help="cosine (with --warmup-epochs) or the paper's x0.96 every 8 epochs")
    opt.add_argument("--warmup-epochs", type=float, default=0.0)
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--label-smoothing", type=float, default=0.0)
    opt.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                     help="Polyak averaging of weights, used for evaluation and export")
    opt.add_argument("--ema-momentum", type=float, default=None,
                     help="default: averages about the last 5%% of the steps")

    qat = p.add_argument_group("quantization-aware training (docs/training.md)")
    qat.add_argument("--qat-epochs", type=int, default=0,
                     help="fine-tune N more epochs with fake int8 quantization after the "
                     "float epochs; writes qat.keras for googlenet-export's tflite-int8")
    qat.add_argument("--qat-learning-rate", type=float, default=None,
                     help="peak learning rate of the QAT epochs (default: 0.01 x "
                     "--learning-rate)")

    dist = p.add_argument_group("hardware")
    dist.add_argument("--precision", default="auto", choices=PRECISIONS,
                      help="auto: mixed_float16 on recent GPUs, mixed_bfloat16 on CPUs with "
                      "AVX512_BF16/AMX, else float32")
    dist.add_argument("--replicas", type=int, default=None,
                      help="MirroredStrategy replicas (all GPUs; on a CPU: N logical devices)")
    dist.add_argument("--strategy", default="mirrored", choices=["mirrored", "multi-worker"],
                      help="multi-worker: MultiWorkerMirroredStrategy across processes/hosts, "
                      "cluster from TF_CONFIG")
    dist.add_argument("--workers", type=int, default=None,
                      help="start N multi-worker processes on 127.0.0.1 and wait for them")
    dist.add_argument("--loop", default=None, choices=["fit", "custom"],
                      help="training loop (default: Model.fit; the custom strategy.run loop "
                      "under multi-worker)")
    dist.add_argument("--seed", type=int, default=0)

    transfer = p.add_argument_group("transfer learning")
    transfer.add_argument("--init-weights", default=None,
                          help="a .keras GoogLeNet or a run directory to start from")
    transfer.add_argument("--freeze-backbone", action="store_true",
                          help="train only the heads (BatchNorm stays in inference mode)")
    transfer.add_argument("--unfreeze-after", type=int, default=None,
                          help="unfreeze the backbone after N epochs (LR x0.1)")

    out = p.add_argument_group("output")
    out.add_argument("--run-name", default=None,
                     help="default: <dataset>-<variant>-<size>px")
    out.add_argument("--output-dir", default="saved_models")
    out.add_argument("--overwrite", action="store_true",
                     help="replace a finished run: the new run trains beside it and is swapped "
                     "in only once it has finished (the same command resumes an interrupted "
                     "replacement); files you added to the run directory are kept")
    add_debug_flag(p)
    return p


def main(argv=None):
    quiet_start()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    require_extras(PROG, "train")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # per-step collective chatter
    if args.workers is not None:
        from keras_googlenet.checks import positive_int

        try:
            positive_int("--workers", args.workers)
        except ValueError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return EXIT_BAD_ARGUMENTS
        from keras_googlenet_training.multiworker import launch_local_workers

        return launch_local_workers(drop_options(argv, with_value=("--workers",)), args.workers)

    from keras_googlenet.errors import is_refusal, refuse_or_report
    from keras_googlenet_training import callbacks
    from keras_googlenet_training.train import train
    from keras_googlenet_training.train_config import TrainConfig

    options = vars(args)
    options.pop("workers")
    debug = options.pop("debug")
    config = TrainConfig(**options)
    # SIGTERM (kill, a scheduler, Kubernetes) stops a run like Ctrl-C. Not in a
    # multi-worker process: blocked in a collective it could not act on it anyway.
    stop_on_sigterm = (sigterm_as_interrupt() if config.strategy != "multi-worker"
                       else contextlib.nullcontext())
    try:
        with stop_on_sigterm:
            result = train(config)
    except callbacks.TrainingDivergedError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt as error:  # one line, not a 58-line traceback
        return _interrupted(error, config)
    except Exception as error:
        if isinstance(error, OSError) and not is_refusal(error):
            return _cannot_write(error, config)
        return refuse_or_report(PROG, error, log_dir=_log_dir(config), debug=debug)
    print(json.dumps(result.metrics, indent=2))
    return 0


def _interrupted(error, config):
    done = getattr(error, "epochs_completed", 0)
    total = config.epochs + config.qat_epochs
    kept = (" The finished run it was to replace is unchanged."
            if getattr(error, "replacing", False) else "")
    print(f"interrupted after epoch {done} of {total}; run the same command to "
          f"resume.{kept}" if done else "interrupted before the first epoch was backed up; "
          f"run the same command to start again.{kept}", file=sys.stderr)
    # A `TrainingInterrupted` says whether a SIGTERM stopped training; else the error does.
    return EXIT_TERMINATED if getattr(error, "terminated", False) else interrupted_status(error)


def _cannot_write(error, config):
    """An OSError: its real cause and path (the output directory is read-only, full...)."""
    from keras_googlenet.publish import is_disk_full

    where = os.fspath(error.filename or config.output_dir)
    cause = "no space left on device" if is_disk_full(error) else (
        error.strerror or str(error) or type(error).__name__)
    output_dir = os.path.abspath(config.output_dir)
    if os.path.abspath(where).startswith(output_dir + os.sep) or \
            os.path.abspath(where) == output_dir:
        print(f"{PROG}: error: cannot write {where}: {cause} (--output-dir "
              f"{config.output_dir}); the last good backup is kept: free space or fix it and "
              "rerun to resume.", file=sys.stderr)
    else:  # an input: the dataset, --init-weights
        print(f"{PROG}: error: cannot read {where}: {cause}.", file=sys.stderr)
    return EXIT_BAD_ARGUMENTS


def _log_dir(config):
    """Where an internal error's traceback goes: the directory the run was trained in (a
    replacement's staging directory: the finished run stays as it was), else the output
    directory."""
    from keras_googlenet_training import run_dir as run_dir_lib

    try:
        resolved = config.resolved()
        return run_dir_lib.training_dir(
            run_dir_lib.run_dir_of(resolved.output_dir, resolved.run_name),
            overwrite=resolved.overwrite)
    except Exception:  # the settings themselves are what failed: the output directory
        return config.output_dir


if __name__ == "__main__":
    sys.exit(main())
