"""What tracing the main job's train step costs per graph node, and why no setting removes it.

    python benchmarks/investigations/trace_cost.py [--ops 2000] [--repeats 4]

Prints two tables:

- TensorFlow's own cost of adding ops to a graph while a `tf.function` is traced, per node of
  the traced graph: `x * 0.5` (a constant and a multiply, two nodes) and `tf.raw_ops.Mul` with
  a tensor (one), each at Python stack depth 0 and 100 (Keras' `fit` traces its step about 100
  frames deep; TensorFlow records each op's stack), after a throwaway trace;
- the main job's model and optimizer (`v1_bn`, 80 px, aux heads, batch 64, `mixed_bfloat16`,
  Adam with EMA, as in `benchmarks/first_step.py`; the learning rate constant, not
  `googlenet-train`'s schedule), its bare `train_step` (no `fit` wrapper, strategy or
  iterator) traced `--repeats` times without running, in a fresh process per row: the first
  trace, the median of the later ones, graph nodes and microseconds per node, with Python's
  garbage collector as is, frozen (`gc.freeze()` after the build) and off; then the graph's
  ten commonest op types.
"""

import argparse
import collections
import gc
import json
import statistics
import sys
import time


def _nodes(graph):
    """Every node of a traced graph, those of its function library (nested functions) too."""
    graph_def = graph.as_graph_def()
    return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def per_node_microseconds(ops, depth, raw):
    """Microseconds of tracing per graph node, for `ops` multiplies `depth` frames deep."""
    import tensorflow as tf

    def nested(levels, make):  # a Python stack `levels` frames deeper
        return make() if levels == 0 else nested(levels - 1, make)

    timings = []

    def build(x):
        def make():
            start = time.perf_counter()
            half, y = tf.constant(0.5), x
            for _ in range(ops):
                y = tf.raw_ops.Mul(x=y, y=half) if raw else y * 0.5
            timings.append(time.perf_counter() - start)
            return y

        return nested(depth, make)

    graph = tf.function(build, autograph=False).get_concrete_function(
        tf.TensorSpec([None, 8])).graph
    return timings[0] / _nodes(graph) * 1e6


def main_job_trace(repeats, gc_mode):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_googlenet as kg

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = kg.GoogLeNet(variant="v1_bn", input_shape=(80, 80, 3), classes=10, include_aux=True)
    kg.compile_googlenet(model, optimizer=kg.optimizers.Adam(2e-3, use_ema=True))
    labels = kg.head_targets(model, np.zeros(64, "int32"))
    spec = tf.data.Dataset.from_tensors((np.zeros((64, 80, 80, 3), "float32"), labels)) \
        .element_spec
    if gc_mode == "frozen":
        gc.freeze()
    elif gc_mode == "off":
        gc.disable()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        graph = tf.function(model.train_step).get_concrete_function(spec).graph
        seconds.append(time.perf_counter() - start)
    gc.enable()
    op_types = collections.Counter(node.op for node in graph.as_graph_def().node)
    return seconds[0], statistics.median(seconds[1:]), _nodes(graph), op_types.most_common(10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=4, help="traces per row (>= 2)")
    parser.add_argument("--child", choices=["as-is", "frozen", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ops < 1 or args.repeats < 2:
        parser.error("--ops must be a positive integer and --repeats at least 2")
    if args.child:
        first, later, nodes, op_types = main_job_trace(args.repeats, args.child)
        print(json.dumps([first, later, nodes, op_types]))
        return 0
    per_node_microseconds(args.ops, 0, True)  # a throwaway trace: the process's one-off costs
    print("| op added while tracing | stack depth 0, µs/node | stack depth 100, µs/node |")
    print("|---|---|---|")
    for raw, label in ((False, "`x * 0.5` (constant + Mul)"), (True, "`tf.raw_ops.Mul(x, c)`")):
        cells = [f"{per_node_microseconds(args.ops, depth, raw):.0f}" for depth in (0, 100)]
        print(f"| {label} | {cells[0]} | {cells[1]} |", flush=True)
    import subprocess  # each garbage-collector mode in a fresh process: the same heap

    print("\n| main job's train step, garbage collector | first trace s | later traces s "
          "(median) | graph nodes | µs per node, later traces |")
    print("|---|---|---|---|---|")
    for mode in ("as-is", "frozen", "off"):
        done = subprocess.run([sys.executable, __file__, "--child", mode, "--repeats",
                               str(args.repeats)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"the {mode} row failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        first, later, nodes, op_types = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {mode} | {first:.2f} | {later:.2f} | {nodes} | {later / nodes * 1e6:.0f} |",
              flush=True)
    print("\nthe commonest op types:", ", ".join(f"{op} {n}" for op, n in op_types))
    return 0


if __name__ == "__main__":
    sys.exit(main())
