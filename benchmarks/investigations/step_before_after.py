"""One training step of the library that this Python imports, to compare two checkouts.

    python benchmarks/investigations/step_before_after.py {float32,mixed_bfloat16}

`benchmarks/train_throughput.py` needs the current library; this script uses only what every
version since the training issue has (`GoogLeNet`, `compile_googlenet`, `head_targets`), so
an older checkout installed in its own virtual environment runs it too:

    git worktree add /tmp/before bc1817d && python3 -m venv /tmp/vb \
        && /tmp/vb/bin/pip install -e /tmp/before
    /tmp/vb/bin/python benchmarks/investigations/step_before_after.py float32    # before
    .venv/bin/python benchmarks/investigations/step_before_after.py float32      # after

Alternate the two, one process per line. Each line times the `torchvision` topology with
aux heads: 224 px, batch 32, SGD with momentum as `compile_googlenet` sets it up
(`keras_googlenet.optimizers.SGD` where the library has it, else Keras'). It prints the
median of 6 `train_on_batch` steps after 2 untimed ones.
"""

import argparse
import statistics
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("precision", choices=("float32", "mixed_bfloat16"))
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy(args.precision)
    import keras_googlenet as kg

    sgd = getattr(getattr(kg, "optimizers", None), "SGD", None) or keras.optimizers.SGD
    model = kg.GoogLeNet(variant="torchvision", include_aux=True, classes=1000,
                         input_shape=(224, 224, 3))
    kg.compile_googlenet(model, optimizer=sgd(0.01, momentum=0.9))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 224, 224, 3)).astype("float32")
    y = kg.head_targets(model, rng.integers(0, 1000, 32))
    seconds = []
    for _ in range(8):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - start)
    step = statistics.median(seconds[2:])
    print(f"{kg.__file__}  {sgd.__module__}.{sgd.__name__}  {args.precision}: "
          f"{32 / step:.2f} img/s, {step:.3f} s a step")


if __name__ == "__main__":
    main()
