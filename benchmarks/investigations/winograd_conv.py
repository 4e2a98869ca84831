"""Would a Winograd rewrite of GoogLeNet's 3x3 convs speed up ONNX Runtime? (It does not.)

    python benchmarks/investigations/winograd_conv.py --threads 2

Winograd F(2x2, 3x3) computes a stride-1 3x3 conv with 2.25x fewer multiply-adds: the
same math, different rounding. ONNX Runtime has no Winograd kernel for float32, so the
rewrite has to be spelled in ONNX ops: input transform as a grouped 4x4/2 conv, 16 batched
MatMuls, output transform as a grouped 1x1 conv, DepthToSpace to put the 2x2 tiles back.
For each of GoogLeNet's large 3x3 convs this script times the plain Conv+Relu against that
rewrite (batch 1, median of `--runs`) and checks they agree. An experiment backing
docs/export.md, not a test.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

# The shared timing loop lives one folder up, beside the product benchmarks.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _timing import median_ms  # noqa: E402

# (name, input channels, output channels, spatial size): the big 3x3 convs of the
# torchvision topology at 224x224, 47 % of its multiply-adds between them.
SHAPES = (
    ("conv2", 64, 192, 56),
    ("inception_3b_3x3", 128, 192, 28),
    ("inception_3a_3x3", 96, 128, 28),
    ("inception_4e_3x3", 160, 320, 14),
)

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def direct_graph(weights, bias):
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["y"])]
    return nodes, [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")]


def winograd_graph(weights, bias, size):
    from onnx import helper, numpy_helper

    out_ch, in_ch = weights.shape[:2]
    tiles = size // 2
    # Input transform V = B^T d B of every 4x4 tile (stride 2): channel c*16 + (4a + b).
    k_in = np.einsum("ar,bs->abrs", B_T, B_T).reshape(16, 1, 4, 4)
    k_in = np.tile(k_in, (in_ch, 1, 1, 1)).astype(np.float32)
    u = np.einsum("ar,kcrs,bs->abkc", G, weights, G).reshape(16, out_ch, in_ch)
    # Output transform A^T M A to 2x2 outputs: channel k*4 + (2i + j), then DepthToSpace.
    k_out = np.einsum("ia,jb->ijab", A_T, A_T).reshape(4, 16, 1, 1)
    k_out = np.tile(k_out, (out_ch, 1, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "k_in"], ["v"], group=in_ch, strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["v", "shape_v"], ["v_flat"]),           # [C, 16, T]
        helper.make_node("Transpose", ["v_flat"], ["v_t"], perm=[1, 0, 2]),   # [16, C, T]
        helper.make_node("MatMul", ["u", "v_t"], ["m"]),                       # [16, K, T]
        helper.make_node("Transpose", ["m"], ["m_t"], perm=[1, 0, 2]),        # [K, 16, T]
        helper.make_node("Reshape", ["m_t", "shape_m"], ["m_img"]),
        helper.make_node("Conv", ["m_img", "k_out", "b_out"], ["o"], group=out_ch),
        helper.make_node("Relu", ["o"], ["o_relu"]),
        helper.make_node("DepthToSpace", ["o_relu"], ["y"], blocksize=2, mode="CRD"),
    ]
    inits = {"k_in": k_in, "u": u.astype(np.float32), "k_out": k_out,
             "b_out": np.repeat(bias, 4).astype(np.float32),
             "shape_v": np.array([in_ch, 16, tiles * tiles], np.int64),
             "shape_m": np.array([1, 16 * out_ch, tiles, tiles], np.int64)}
    return nodes, [numpy_helper.from_array(v, k) for k, v in inits.items()]


def session(nodes, inits, in_ch, out_ch, size, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_ch, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_ch, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| conv | shape | M MACs direct / Winograd | direct ms | Winograd ms | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name, in_ch, out_ch, size in SHAPES:
        weights = (rng.standard_normal((out_ch, in_ch, 3, 3)) * 0.05).astype(np.float32)
        bias = rng.standard_normal(out_ch).astype(np.float32)
        x = rng.standard_normal((1, in_ch, size, size)).astype(np.float32)
        direct = session(*direct_graph(weights, bias), in_ch, out_ch, size, args.threads)
        wino = session(*winograd_graph(weights, bias, size), in_ch, out_ch, size, args.threads)
        diff = np.abs(direct.run(None, {"x": x})[0] - wino.run(None, {"x": x})[0]).max()
        macs = size * size * out_ch * in_ch * 9 / 1e6
        direct_ms = median_ms(functools.partial(direct.run, None, {"x": x}), args.runs, 20)
        wino_ms = median_ms(functools.partial(wino.run, None, {"x": x}), args.runs, 20)
        print(f"| {name} | {in_ch}->{out_ch} @ {size}x{size} | {macs:.0f} / {macs / 2.25:.0f} | "
              f"{direct_ms:.2f} | {wino_ms:.2f} | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
