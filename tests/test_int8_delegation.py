"""The int8 export stays on XNNPACK's fast path in LiteRT, for every variant (issue #19).

Phones and x86 servers alike run int8 through XNNPACK's signed int8 kernels; a node that
XNNPACK does not take runs in LiteRT's own kernels and, inside the graph, splits it into
partitions. What may stay off XNNPACK, and why:

- LOCAL_RESPONSE_NORMALIZATION (v1 only): float-only in LiteRT, so the converter wraps it in
  DEQUANTIZE/QUANTIZE and the graph splits into three partitions there.
- the first QUANTIZE (uint8 -> int8) and the last (int8 -> uint8) of the default uint8 I/O:
  XNNPACK converts float <-> int8 and requantizes within one type only. MediaPipe needs
  uint8; with `int8_io="int8"` both are gone.
- the SOFTMAX that ends the graph: XNNPACK's softmax is float32 only. It runs on the
  classes' scores after the last partition, splitting nothing.
"""

import numpy as np
import pytest

from keras_googlenet import GoogLeNet, _compat
from keras_googlenet.export import export_model
from keras_googlenet.spec import VARIANTS

SIZE = 32
FLOAT_ONLY = {"LOCAL_RESPONSE_NORMALIZATION"}


def _int8_export(tmp_path, variant, int8_io="uint8"):
    model = GoogLeNet(variant=variant, input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25)
    images = np.random.default_rng(0).uniform(-1, 1, (8, SIZE, SIZE, 3)).astype("float32")
    report = export_model(model, tmp_path / "out", ["tflite-int8"], calibration_data=images,
                          calibration_steps=8, int8_io=int8_io, verify=False, verbose=False)
    return report["tflite-int8"].path


def _delegation(path):
    """(XNNPACK partitions, the nodes left to LiteRT's own kernels, the interpreter)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)  # XNNPACK: LiteRT's default
    interpreter.allocate_tensors()
    nodes = _compat.tflite_nodes(interpreter)
    partitions = [n for n in nodes if n["op_name"] == "DELEGATE"]
    producer = {int(t): n for n in nodes if n["op_name"] != "DELEGATE" for t in n["outputs"]}
    taken = set()
    for partition in partitions:  # a partition replaced every node between its in- and outputs
        boundary = {int(t) for t in partition["inputs"]}
        pending = [int(t) for t in partition["outputs"]]
        while pending:
            node = producer.get(pending.pop())
            if node is None or node["index"] in taken or set(map(int, node["outputs"])) & boundary:
                continue
            taken.add(node["index"])
            pending.extend(int(t) for t in node["inputs"] if t >= 0)
    left = [n for n in nodes if n["op_name"] != "DELEGATE" and n["index"] not in taken]
    return partitions, left, interpreter


def _concatenation_scales(interpreter):
    """The distinct (scales, zero points) of each CONCATENATION's inputs and output."""
    tensors = {t["index"]: t["quantization_parameters"] for t in
               interpreter.get_tensor_details()}
    return [{(tuple(np.round(tensors[t]["scales"], 9)), tuple(tensors[t]["zero_points"]))
             for t in (*node["inputs"], *node["outputs"])}
            for node in _compat.tflite_nodes(interpreter) if node["op_name"] == "CONCATENATION"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_int8_runs_on_xnnpack_but_for_float_only_ops_and_the_io_ends(tmp_path, variant):
    partitions, left, interpreter = _delegation(_int8_export(tmp_path, variant))
    ends = [n for n in left if n["op_name"] not in FLOAT_ONLY]
    assert [n["op_name"] for n in ends] == ["QUANTIZE", "SOFTMAX", "QUANTIZE"]
    assert list(ends[0]["inputs"]) == [interpreter.get_input_details()[0]["index"]]
    assert list(ends[1]["outputs"]) == list(ends[2]["inputs"])  # the scores, then uint8 out
    assert list(ends[2]["outputs"]) == [interpreter.get_output_details()[0]["index"]]
    lrn = VARIANTS[variant].lrn
    inside = [n["op_name"] for n in left if n["op_name"] in FLOAT_ONLY]
    assert inside == ["LOCAL_RESPONSE_NORMALIZATION"] * (2 if lrn else 0)
    assert len(partitions) == (3 if lrn else 1)  # only LRN splits the graph
    # TFLite's int8 CONCATENATION takes one scale: each Inception block's four branches
    # are calibrated to it, so no branch pays a requantize before the concatenation.
    scales = _concatenation_scales(interpreter)
    assert len(scales) == 9 and all(len(s) == 1 for s in scales)


@pytest.mark.slow
def test_int8_io_leaves_only_the_softmax_to_litert(tmp_path):
    partitions, left, _ = _delegation(_int8_export(tmp_path, "torchvision", int8_io="int8"))
    assert [n["op_name"] for n in left] == ["SOFTMAX"] and len(partitions) == 1
