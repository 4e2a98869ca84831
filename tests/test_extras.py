"""A light library: the core install is TensorFlow, Keras and NumPy; the rest are extras.

The "not installed" cases run in a subprocess in which each extra's top-level module is
marked missing in `sys.modules`, as a fresh `pip install keras-googlenet` would leave it.
"""

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What the extras bring, by distribution and by module name.
EXTRA_DISTRIBUTIONS = ("onnxruntime", "ai-edge-litert", "tf2onnx", "onnx", "keras-tuner",
                       "grpcio", "matplotlib", "scikit-learn", "tensorflow-datasets")
EXTRA_MODULES = ("onnxruntime", "ai_edge_litert", "tf2onnx", "keras_tuner", "grpc",
                 "matplotlib", "sklearn", "tensorflow_datasets")

# Python's own way to mark a module missing: `sys.modules[name] = None` makes `import name`
# raise ModuleNotFoundError and `importlib.util.find_spec(name)` return None.
PRELUDE = textwrap.dedent("""
    import sys

    BLOCKED = {blocked!r}
    for name in BLOCKED:
        sys.modules[name] = None
""")


def _run(blocked, body, home, timeout=300):
    script = PRELUDE.format(blocked=tuple(blocked)) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
                               "HOME": str(home)})


def _requirement_name(requirement):
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_the_core_dependencies_are_tensorflow_keras_and_numpy():
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    assert core == {"tensorflow", "keras", "numpy"}
    assert not core & set(EXTRA_DISTRIBUTIONS)
    extras = project["optional-dependencies"]
    assert {"train", "export", "tune", "hub", "torch", "all", "dev"} <= set(extras)
    assert {_requirement_name(r) for r in extras["export"]} >= {
        "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"}
    assert "keras-googlenet[all]" in extras["dev"]


@pytest.mark.slow
def test_googlenet_builds_saves_and_reloads_without_any_extra(tmp_path):
    result = _run(EXTRA_MODULES, f"""
        import numpy as np
        import keras
        import keras_googlenet as kg

        model = kg.GoogLeNet(include_aux=True, input_shape=(80, 80, 3), classes=3,
                             width_multiplier=0.25)
        path = {str(tmp_path / "model.keras")!r}
        model.save(path)
        loaded = keras.models.load_model(path)
        x = np.random.default_rng(0).uniform(-1, 1, (2, 80, 80, 3)).astype("float32")
        for head, y in model.predict(x, verbose=0).items():
            np.testing.assert_allclose(loaded.predict(x, verbose=0)[head], y, atol=1e-6)
        leaked = sorted(m for m, module in sys.modules.items()
                        if m.split(".")[0] in BLOCKED and module is not None)
        assert not leaked, leaked
        print("OK")
    """, home=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


@pytest.mark.parametrize("cli,argv,blocked,extra", [
    ("train", [], ("sklearn",), "train"),
    ("predict", ["x.png", "--model", "m.keras"], ("onnxruntime",), "export"),
    ("tune", [], ("keras_tuner", "grpc"), "tune"),
])
@pytest.mark.slow
def test_a_cli_whose_extra_is_missing_names_it(cli, argv, blocked, extra, tmp_path):
    result = _run(blocked, f"""
        from keras_googlenet_training.cli.{cli} import main
        sys.exit(main({argv!r}))
    """, home=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert (f"googlenet-{cli}: error: needs the '{extra}' extra: "
            f"pip install 'keras-googlenet[{extra}]'") in result.stderr
    assert "Traceback" not in result.stderr
