"""Where an exported ONNX model spends its time in ONNX Runtime, and how close it runs to peak.

    python benchmarks/investigations/onnx_profile.py exports/run1/googlenet.onnx --threads 2

Times batch-1 inference (median of `--runs` calls), then profiles the same session with
ONNX Runtime's per-node profiler and prints:

- time per operator type (the profiler's overhead makes the total a little above the wall time);
- for every Conv: its multiply-accumulates (from ONNX shape inference), time and G MAC/s,
  the slowest first, and the totals for small (< 20 M MACs) and large convs;
- the model's overall rate (all conv MACs / median latency). Compare with the CPU's peak
  (`benchmarks/investigations/fma_peak.c`).

Not a test: figures depend on the machine and its load. Without a model it exports the
torchvision-topology GoogLeNet (224x224, random weights) with `keras_googlenet.export`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

import numpy as np

# The shared timing loop lives one folder up, beside the product benchmarks.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _timing import median_ms  # noqa: E402


def conv_macs(model_path):
    """{conv output name: multiply-accumulates} for every Conv in the graph."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(model_path))
    graph = model.graph
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.output, *graph.input]}
    weights = {t.name: list(t.dims) for t in graph.initializer}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    macs = {}
    for node in graph.node:
        if node.op_type == "Conv" and node.output[0] in shapes and node.input[1] in weights:
            _, in_per_group, kh, kw = weights[node.input[1]]
            out = node.output[0]
            # ORT fuses Conv+Relu; the fused node is named after the Relu's output.
            after = consumers[out]
            if len(after) == 1 and after[0].op_type == "Relu":
                out = after[0].output[0]
            macs[out] = int(np.prod(shapes[node.output[0]])) * in_per_group * kh * kw
    return macs


def session(path, threads, profile=False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = profile
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def profile(path, threads, runs):
    sess = session(path, threads)
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    latency = median_ms(lambda: sess.run(None, {inp.name: x}), runs)

    sess = session(path, threads, profile=True)
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    profile_file = sess.end_profiling()
    with open(profile_file) as f:
        events = json.load(f)
    os.remove(profile_file)
    by_type, by_node = collections.defaultdict(float), collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            ms = event["dur"] / 1e3 / runs
            by_type[event["args"]["op_name"]] += ms
            # Optimized nodes are named after their output ("<output>_nchwc" for NCHWc)
            name = event["name"].removesuffix("_kernel_time").removesuffix("_nchwc")
            by_node[name] += ms
    return latency, by_type, by_node


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help=".onnx file (default: export a GoogLeNet)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--top", type=int, default=15, help="how many convs to list (slowest rate)")
    args = p.parse_args(argv)

    path = args.model
    if path is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras_googlenet as kg
        from keras_googlenet.export import export_model

        tmp = tempfile.mkdtemp(prefix="googlenet-onnx-profile-")
        source = os.path.join(tmp, "googlenet.keras")
        kg.GoogLeNet(weights=None, variant="torchvision", include_aux=False).save(source)
        export_model(source, tmp, formats=["onnx"], verbose=False)
        path = os.path.join(tmp, "googlenet.onnx")
    if not os.path.isfile(path):
        p.error(f"model {path!r} does not exist")

    macs = conv_macs(path)
    latency, by_type, by_node = profile(path, args.threads, args.runs)
    total_macs = sum(macs.values())

    print(f"{path}: {args.threads} threads, batch 1, median of {args.runs} runs")
    print(f"latency {latency:.2f} ms; {len(macs)} convs, {total_macs / 1e9:.3f} G MACs "
          f"-> {total_macs / (latency * 1e-3) / 1e9:.0f} G MAC/s overall")
    print("\nper operator type (profiled; includes profiler overhead):")
    for op, ms in sorted(by_type.items(), key=lambda kv: -kv[1]):
        print(f"  {op:24s} {ms:7.3f} ms")

    rows = [(name, macs[name] / 1e6, ms, macs[name] / (ms * 1e-3) / 1e9)
            for name, ms in by_node.items() if name in macs]
    if rows:
        rows.sort(key=lambda r: r[3])
        print(f"\nconvs with the lowest rate ({len(rows)} matched to profile entries):")
        print(f"  {'conv output':58s} {'M MACs':>8s} {'ms':>7s} {'G MAC/s':>8s}")
        for name, mmacs, ms, rate in rows[: args.top]:
            print(f"  {name[:58]:58s} {mmacs:8.1f} {ms:7.3f} {rate:8.0f}")
        small = [r for r in rows if r[1] < 20]
        print(f"  convs under 20 M MACs: {len(small)}, {sum(r[1] for r in small):.0f} M MACs in "
              f"{sum(r[2] for r in small):.2f} ms; the rest: "
              f"{sum(r[1] for r in rows) - sum(r[1] for r in small):.0f} M MACs in "
              f"{sum(r[2] for r in rows) - sum(r[2] for r in small):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
