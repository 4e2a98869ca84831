import os

import pytest

from keras_googlenet_training.cli import START_NOISE, _stderr_without
from keras_googlenet_training.cpu import choose_cpu_kernels

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
choose_cpu_kernels()  # the CLIs' choice (oneDNN on an AVX2-only CPU), for in-process tests too
# TensorFlow's start-up lines bypass pytest's capture in the pytest-xdist controller.
with _stderr_without(START_NOISE):
    import keras
    from _digits import SIZE, digits_arrays, scale, write_run_dir

    from keras_googlenet import GoogLeNet
    from keras_googlenet.export import FORMATS, export_model

# The fast tier (`-m "not slow"`) leaves these out: training the shared run and exporting it
# to every format take minutes on a 2-core CPU, so every test that needs them is slow.
SLOW_FIXTURES = ("trained_run", "exported")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group("trained_run"))
        elif _uses_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def _uses_a_module_fixture(item):
    """Under `pytest -n 2 --dist loadgroup` (README), the tests that share a module- or
    session-scoped fixture run in one worker, so the fixture is built once."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(defs and defs[-1].scope in ("module", "session") and name != "digits"
               for name, defs in definitions.items())


@pytest.fixture(autouse=True)
def _float32_policy():
    """Each test starts and ends in float32, whatever policy the previous one set."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


# A trained run and its exports, shared by test_export.py and test_mobile.py.
@pytest.fixture(scope="session")
def digits():
    return digits_arrays()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, digits):
    """The paper's v1 (LRN included) at 32 px, width 0.25, trained briefly on digits."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_val, y_val) = digits
    model = GoogLeNet(variant="v1", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25, dropout=0.2)
    epochs = 15
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, epochs * len(x_train) // 64)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(scale(x_train), y_train, batch_size=64, epochs=epochs, verbose=0)
    accuracy = model.evaluate(scale(x_val), y_val, verbose=0)[1]
    run_dir = str(tmp_path_factory.mktemp("run"))
    write_run_dir(run_dir, model, "v1", 0.25)
    return run_dir, model, accuracy


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained_run, digits):
    run_dir, _, _ = trained_run
    (x_train, _), (x_val, y_val) = digits
    out = str(tmp_path_factory.mktemp("exports"))
    report = export_model(
        run_dir, out, list(FORMATS), calibration_data=x_train, calibration_steps=600,
        verification_data=(scale(x_val), y_val), verbose=False,
    )
    return out, report
