"""GoogLeNet training steps on a GPU: keras_googlenet under `KERAS_BACKEND=jax` against torchvision.

Made for a machine with an NVIDIA GPU, JAX and PyTorch but no TensorFlow, that can reach no
package index. Keras and the two small packages it needs there (namex, optree) travel as wheels:

    # here, once: fetch the wheels for the GPU machine's Python (3.12 on the H200 image)
    python benchmarks/gpu_check.py --fetch-wheels .whl --python-version 3.12
    # there: installs only those wheels, into a temporary folder, then prints one table
    python3 benchmarks/gpu_check.py --wheels .whl

Each row is the median time of `--steps` training steps after `--warmup` untimed ones, on the
same device: the full `torchvision` topology with both aux heads (loss weights 1.0/0.3/0.3),
SGD with momentum, at `--input-size` and `--batch-size` (224 and 128 by default), float32 and
bf16 (Keras' `mixed_bfloat16`; `torch.autocast(dtype=torch.bfloat16)` with channels-last
tensors). Every row runs in its own process, so JAX's and PyTorch's memory pools never share
the GPU. A row that cannot run says why in its place. `tests/test_gpu_check.py` runs the
script on the CPU with tiny sizes, with TensorFlow hidden, so it is known to work before a
GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRAMEWORKS = ("keras-jax", "torchvision")
PRECISIONS = ("float32", "bfloat16")
# What Keras 3 needs beyond what the GPU image has (absl-py, h5py, ml-dtypes, numpy, rich).
CARRIED_PACKAGES = ("keras", "namex", "optree")
AUX_LOSS_WEIGHT = 0.3


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def step_times_keras(args):
    """Seconds per training step of keras_googlenet under the JAX backend, and the device."""
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax
    import keras
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from keras_googlenet import GoogLeNet, compile_googlenet

    if args.precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = GoogLeNet(variant="torchvision", include_aux=True, weights=None,
                      input_shape=(args.input_size, args.input_size, 3), classes=args.classes)
    compile_googlenet(model, optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch_size, args.input_size, args.input_size, 3))
    x = x.astype("float32")
    labels = rng.integers(0, args.classes, args.batch_size)
    y = {head: labels for head in model.output}
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)  # returns host floats: the step has finished
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return times, str(jax.devices()[0].device_kind)


def step_times_torch(args):
    """Seconds per training step of torchvision's GoogLeNet, and the device."""
    import torch
    import torchvision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True,
                                         num_classes=args.classes).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch_size, 3, args.input_size, args.input_size, device=device) * 2 - 1
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)
    bf16 = args.precision == "bfloat16"
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            main, aux2, aux1 = model(x)
            loss = loss_fn(main, y) + AUX_LOSS_WEIGHT * (loss_fn(aux1, y) + loss_fn(aux2, y))
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    return times, name


def run_row(args):
    """The worker: one framework and precision, its result as one JSON line on stdout."""
    measure = step_times_keras if args.framework == "keras-jax" else step_times_torch
    times, device = measure(args)
    print(json.dumps({"step_s": median(times), "device": device}))


def row(framework, precision, args, env):
    command = [sys.executable, __file__, "--worker", "--framework", framework,
               "--precision", precision, "--input-size", str(args.input_size),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--classes", str(args.classes)]
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=args.row_timeout)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        return {"error": lines[-1][:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results, args):
    lines = [f"GoogLeNet (torchvision topology, aux heads) training, {args.input_size} px, "
             f"batch {args.batch_size}, median of {args.steps} steps after {args.warmup}",
             "",
             "| framework | precision | device | ms/step | img/s | vs torchvision |",
             "|---|---|---|---|---|---|"]
    for (framework, precision), result in results.items():
        if "error" in result:
            lines.append(f"| {framework} | {precision} | – | not run: {result['error']} | | |")
            continue
        rate = args.batch_size / result["step_s"]
        peer = results.get(("torchvision", precision), {})
        ratio = f"{peer['step_s'] / result['step_s']:.2f}×" if "step_s" in peer else "–"
        lines.append(f"| {framework} | {precision} | {result['device']} | "
                     f"{result['step_s'] * 1e3:.1f} | {rate:.1f} | {ratio} |")
    return "\n".join(lines)


def install_wheels(wheels):
    """Install the carried wheels (and nothing else) into a temporary folder; its path."""
    found = sorted(pathlib.Path(wheels).glob("*.whl"))
    if not found:
        raise SystemExit(f"gpu_check: --wheels {wheels}: no .whl files there")
    target = tempfile.mkdtemp(prefix="gpu_check_site_")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--target", target, *map(str, found)], check=True)
    return target


def fetch_wheels(folder, python_version):
    """Here, with a package index: download the carried packages for the GPU machine."""
    from importlib import metadata

    pins = [f"{name}=={metadata.version(name)}" for name in CARRIED_PACKAGES]
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--implementation", "cp", "--python-version",
                    python_version, *platforms, "--platform=manylinux2014_x86_64",
                    "-d", folder, *pins], check=True)
    print(f"gpu_check: {', '.join(pins)} in {folder}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compiling)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--row-timeout", type=float, default=180, help="seconds per row")
    parser.add_argument("--wheels", help="install the .whl files of this folder first")
    parser.add_argument("--fetch-wheels", metavar="DIR", help="download the wheels and stop")
    parser.add_argument("--python-version", default="3.12", help="with --fetch-wheels")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("input_size", "batch_size", "steps", "classes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    for name, allowed in (("precisions", PRECISIONS), ("frameworks", FRAMEWORKS)):
        unknown = set(getattr(args, name).split(",")) - set(allowed)
        if unknown:
            parser.error(f"--{name}: unknown {sorted(unknown)}; allowed: {', '.join(allowed)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_row(args)
    if args.fetch_wheels:
        return fetch_wheels(args.fetch_wheels, args.python_version)
    env = dict(os.environ)
    if args.wheels:
        site = install_wheels(args.wheels)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
    results = {}
    for precision in args.precisions.split(","):
        for framework in args.frameworks.split(","):
            try:
                results[framework, precision] = row(framework, precision, args, env)
            except subprocess.TimeoutExpired:
                results[framework, precision] = {"error": f"over {args.row_timeout:.0f} s"}
            print(f"gpu_check: {framework} {precision}: {results[framework, precision]}",
                  file=sys.stderr, flush=True)
    print(table(results, args))


if __name__ == "__main__":
    main()
