"""torchvision's own GoogLeNet in ONNX Runtime, timed against our export on the same machine.

    # 1. where PyTorch is installed (any environment; the CPU wheel is enough):
    python benchmarks/investigations/torchvision_onnx.py export /tmp/torchvision_googlenet.onnx
    # 2. here: batch-1 latency of both, interleaved in rounds so that load hits them alike
    python benchmarks/investigations/torchvision_onnx.py compare /tmp/torchvision_googlenet.onnx \
        /tmp/bench/googlenet.onnx --threads 2

`export` writes torchvision's `GoogLeNet(aux_logits=False, transform_input=False)` (random
weights; eval mode, so torch.onnx folds BatchNorm into the convs) with opset 17 and a dynamic
batch. `compare` prints the median of the per-round medians for each model (`--openvino`:
also in OpenVINO's CPU plugin held to float32). Not a test:
it backs the reference figures discussed in docs/export.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np

# The shared timing loop lives one folder up, beside the product benchmarks.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _timing import call_times_ms  # noqa: E402


def torchvision_googlenet():
    """torchvision's GoogLeNet module, imported normally or, when torchvision's compiled ops
    do not match the installed torch, from the source of `torchvision/models/googlenet.py`
    (the model itself is plain torch.nn)."""
    try:
        from torchvision.models import GoogLeNet

        return GoogLeNet
    except (ImportError, RuntimeError):
        import importlib.util

        spec = importlib.util.find_spec("torchvision")
        if spec is None:
            raise
        path = os.path.join(os.path.dirname(spec.origin), "models", "googlenet.py")
        with open(path) as f:
            source = f.read().split("class GoogLeNet_Weights")[0]  # the weights enum needs more
        source = re.sub(r"^from \..*$", "", source, flags=re.M)
        namespace = {"__name__": "torchvision_googlenet", "_log_api_usage_once": lambda _: None}
        exec(compile(source, path, "exec"), namespace)
        return namespace["GoogLeNet"]


def export(path, opset=17):
    import torch

    model = torchvision_googlenet()(num_classes=1000, aux_logits=False, transform_input=False,
                                    init_weights=True).eval()
    torch.onnx.export(model, (torch.rand(1, 3, 224, 224),), path, input_names=["image"],
                      output_names=["logits"], opset_version=opset, dynamo=False,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    print(f"wrote {path} (torch {torch.__version__})")


def _onnxruntime_call(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    feed = {inp.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    return f"ONNX Runtime {ort.__version__}", lambda: sess.run(None, feed)


def _openvino_call(path, threads):
    """The same .onnx in OpenVINO's CPU plugin, held to float32 (on CPUs with AMX or
    AVX512-BF16 its default is to compute in bfloat16)."""
    import openvino

    core = openvino.Core()
    model = core.read_model(path)
    shape = [d.get_length() if d.is_static else 1 for d in model.inputs[0].get_partial_shape()]
    model.reshape({model.inputs[0].get_any_name(): shape})
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    return f"OpenVINO {openvino.__version__} (f32)", lambda: request.infer({0: x})


def compare(paths, threads, rounds, runs, openvino=False):
    calls = [_onnxruntime_call(path, threads) for path in paths]
    if openvino:
        calls += [_openvino_call(path, threads) for path in paths]
    for _, call in calls:
        for _ in range(10):
            call()
    medians = [[] for _ in calls]
    for _ in range(rounds):
        for index, (_, call) in enumerate(calls):
            medians[index].append(float(np.median(call_times_ms(call, runs))))
    print(f"{threads} threads, batch 1: median of {rounds} rounds x {runs} runs")
    for (runtime, _), path, values in zip(calls, paths * (1 + openvino), medians, strict=True):
        print(f"  {np.median(values):6.2f} ms (rounds {min(values):.2f}-{max(values):.2f})  "
              f"{runtime}  {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write torchvision's GoogLeNet as ONNX (needs PyTorch)")
    e.add_argument("out")
    e.add_argument("--opset", type=int, default=17)
    c = sub.add_parser("compare", help="time .onnx models in ONNX Runtime, interleaved")
    c.add_argument("models", nargs="+")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--rounds", type=int, default=6)
    c.add_argument("--runs", type=int, default=30)
    c.add_argument("--openvino", action="store_true",
                   help="also time each model in OpenVINO at float32 (needs `openvino`)")
    args = p.parse_args(argv)
    if args.command == "export":
        export(args.out, args.opset)
    else:
        missing = [m for m in args.models if not os.path.isfile(m)]
        if missing:
            p.error(f"no such model file: {missing}")
        compare(args.models, args.threads, args.rounds, args.runs, args.openvino)
    return 0


if __name__ == "__main__":
    sys.exit(main())
