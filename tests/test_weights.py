"""Porting torchvision's GoogLeNet weights: parity with torchvision, without PyTorch.

The fixture (`tests/fixtures/torchvision_googlenet.*`, made by
`scripts/make_torchvision_fixture.py`) holds torchvision's state-dict manifest, a few uint8
images and the logits torchvision computed for them; the tensors themselves regenerate
deterministically from the manifest (`tests/_synthetic_torchvision.py`).
"""

import json
import pathlib
import shutil
import sys

import _synthetic_torchvision as synthetic_torchvision
import numpy as np
import pytest

from keras_googlenet import GoogLeNet, preprocess_input
from keras_googlenet import weights as weights_lib
from keras_googlenet.__main__ import main as cli_main
from keras_googlenet.weights import mapping as weights_mapping
from keras_googlenet.weights.imagenet import (
    CACHE_ENV,
    IMAGENET_WEIGHTS_FILE,
    OFFLINE_ENV,
    TORCHVISION_URL,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def manifest():
    with open(FIXTURES / "torchvision_googlenet.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES / "torchvision_googlenet.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def state(manifest):
    return synthetic_torchvision.synthetic_state_dict(manifest)


@pytest.fixture(scope="module")
def state_npz(state, tmp_path_factory):
    path = tmp_path_factory.mktemp("torchvision") / "googlenet-synthetic.npz"
    np.savez(path, **state)
    return str(path)


@pytest.fixture(scope="module")
def inputs(reference):
    return preprocess_input(reference["images"], variant="torchvision")


@pytest.fixture(scope="module")
def ported(state_npz):
    """The real conversion path: an .npz on disk -> from_torchvision, aux heads included."""
    return weights_lib.from_torchvision(
        state_npz, include_aux=True, classifier_activation=None, return_report=True
    )


@pytest.fixture(scope="module")
def ported_outputs(ported, inputs):
    model, _ = ported
    return model.predict(inputs, verbose=0)


def test_fixture_regenerates_the_tensors_torchvision_used(manifest, state, reference):
    # The digest was computed by the script from torchvision's own state_dict().
    assert synthetic_torchvision.state_dict_digest(state) == manifest["state_sha256"]
    assert len(state) == manifest["num_tensors"] == 364
    assert {"conv1.conv.weight", "inception3a.branch4.1.bn.running_var", "aux2.fc1.weight",
            "fc.bias"} <= set(state)
    assert reference["images"].dtype == np.uint8
    assert reference["images"].shape == (manifest["num_images"], 224, 224, 3)
    # preprocess_input(variant="torchvision") is exactly the [-1, 1] scaling torchvision saw.
    np.testing.assert_array_equal(
        preprocess_input(reference["images"], variant="torchvision"),
        synthetic_torchvision.to_model_input(reference["images"]),
    )
    # torchvision's transform_input=True on ImageNet-normalised input == [-1, 1] input.
    assert manifest["transform_input_max_abs_diff"] < TOLERANCE
    assert manifest["logit_std"] > 0.5  # logits are not degenerate


def test_logits_match_torchvision(ported_outputs, reference):
    for head, key in (("main", "logits"), ("aux1", "aux1_logits"), ("aux2", "aux2_logits")):
        got, want = ported_outputs[head], reference[key]
        assert got.shape == want.shape == (len(reference["images"]), 1000)
        assert np.abs(got - want).max() < TOLERANCE, head


def test_top5_indices_match_torchvision(ported_outputs, reference):
    want = reference["top5"]
    got = np.argsort(-ported_outputs["main"], axis=-1)[:, :5]
    np.testing.assert_array_equal(got, want)
    assert all(len(set(row)) == 5 for row in want)
    assert len({tuple(row) for row in want}) == len(want)  # the images differ
    # the 5th and 6th torchvision logits are further apart than the tolerance
    ordered = -np.sort(-reference["logits"], axis=-1)
    assert (ordered[:, 4] - ordered[:, 5]).min() > 10 * TOLERANCE


def test_every_tensor_consumed_and_every_weight_assigned(ported, manifest):
    model, report = ported
    names = [t["name"] for t in manifest["tensors"]]
    assert sorted(report.consumed + list(report.skipped)) == sorted(names)
    assert not set(report.consumed) & set(report.skipped)
    assert all(name.endswith("num_batches_tracked") for name in report.skipped)
    assert len(report.skipped) == 59  # one per BatchNorm
    assert sorted(report.assigned) == sorted(w.path for w in model.weights)
    assert sorted(report.assigned.values()) == sorted(report.consumed)
    assert report.assigned["aux1_fc/kernel"] == "aux1.fc1.weight"
    assert report.assigned["conv2_reduce_conv/kernel"] == "conv2.conv.weight"
    assert report.assigned["conv2_conv/kernel"] == "conv3.conv.weight"


@pytest.mark.slow
def test_main_only_port_skips_the_untrained_aux_heads(state_npz, inputs, ported_outputs):
    model, report = weights_lib.from_torchvision(state_npz, return_report=True)
    assert not isinstance(model.output, dict)
    probs = model.predict(inputs, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)  # softmax by default
    np.testing.assert_array_equal(probs.argmax(-1), ported_outputs["main"].argmax(-1))
    aux = {k: v for k, v in report.skipped.items() if k.startswith("aux")}
    assert len(aux) == 2 * (5 + 1 + 4)  # conv + 5 BN tensors, fc1 and fc2 weight/bias
    assert all("not pretrained" in reason for name, reason in aux.items()
               if not name.endswith("num_batches_tracked"))
    assert all(w.path in report.assigned for w in model.weights)


def test_aux_fc1_columns_are_permuted_from_nchw_to_nhwc():
    rng = np.random.default_rng(0)
    fmap = rng.standard_normal((128, 4, 4))  # C, H, W
    fc1 = rng.standard_normal((16, 2048))
    torch_out = fc1 @ fmap.reshape(-1)  # torch.flatten of NCHW
    kernel = weights_mapping._flattened_dense_to_keras(128, 4, 4)(fc1)
    keras_out = fmap.transpose(1, 2, 0).reshape(-1) @ kernel  # Flatten of NHWC
    np.testing.assert_allclose(keras_out, torch_out, rtol=1e-10)
    assert not np.allclose(fmap.transpose(1, 2, 0).reshape(-1) @ fc1.T, torch_out)


@pytest.fixture(scope="module")
def blank_model():
    return GoogLeNet(variant="torchvision", include_aux=True, classifier_activation=None)


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda s: s.pop("inception4b.branch2.1.bn.running_var"),
         r"lacks 1 tensor.*'inception4b\.branch2\.1\.bn\.running_var'"),
        (lambda s: s.update({"fc.weight": s["fc.weight"].T}),
         r"'fc\.weight' has shape \(1024, 1000\).*needs \(1000, 1024\)"),
        (lambda s: s.update({"inception3a.branch3.1.conv.weight": np.zeros((32, 16, 5, 5))}),
         r"'inception3a\.branch3\.1\.conv\.weight' has shape \(32, 16, 5, 5\).*\(32, 16, 3, 3\)"),
        (lambda s: s.update({"aux1.fc1.weight": np.zeros((1024, 2047))}),
         r"'aux1\.fc1\.weight' has shape \(1024, 2047\)"),
        (lambda s: s.update({"inception3a.branch5.conv.weight": np.zeros((1, 1, 1, 1))}),
         r"no place in .*'inception3a\.branch5\.conv\.weight'"),
        (lambda s: s.update({"conv1.conv.bias": np.zeros(64)}), r"'conv1\.conv\.bias'"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("aux")],
         r"'aux1\.conv\.conv\.weight'.*no auxiliary heads"),
    ],
)
def test_bad_state_dicts_name_the_tensor_and_assign_nothing(blank_model, state, edit, fragment):
    broken = dict(state)
    edit(broken)
    before = blank_model.get_layer("conv1_conv").kernel.numpy().copy()
    with pytest.raises(ValueError, match=fragment):
        weights_lib.port_state_dict(blank_model, broken)
    np.testing.assert_array_equal(blank_model.get_layer("conv1_conv").kernel.numpy(), before)


def test_other_variants_are_refused(state):
    model = GoogLeNet(variant="v1_bn", include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="variant='torchvision'"):
        weights_lib.port_state_dict(model, state)


def test_pth_without_pytorch_explains_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "googlenet-1378be20.pth"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ImportError, match=r"keras-googlenet\[torch\].*googlenet-1378be20\.npz"):
        weights_lib.load_state_dict(str(path))
    assert cli_main(["convert-torchvision", str(path), str(tmp_path / "o.weights.h5")]) == 2
    with pytest.raises(ValueError, match="convert-torchvision"):
        GoogLeNet(variant="torchvision", weights=str(path))
    # weights="imagenet" finds the .pth in the cache, cannot read it, and never downloads.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    with pytest.raises(ValueError, match=r"found .*googlenet-1378be20\.pth.* needs PyTorch"):
        GoogLeNet(variant="torchvision", weights="imagenet", include_top=False,
                  input_shape=(64, 64, 3))


@pytest.mark.slow
def test_cli_converts_to_weights_file_that_googlenet_loads(state_npz, tmp_path, inputs,
                                                           reference, capsys):
    out = tmp_path / "tv.weights.h5"
    assert cli_main(["convert-torchvision", state_npz, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "287 tensors ported onto 287 Keras weights" in printed  # 305 minus 2 aux heads
    assert "18 skipped (aux head not built" in printed
    model = GoogLeNet(variant="torchvision", weights=str(out), classifier_activation=None)
    logits = model.predict(inputs, verbose=0)
    assert np.abs(logits - reference["logits"]).max() < TOLERANCE
    assert cli_main(["convert-torchvision", state_npz, str(tmp_path / "o.h5")]) == 2
    assert "must end in '.weights.h5'" in capsys.readouterr().err


@pytest.mark.slow
def test_imagenet_weights_come_from_the_cache(state_npz, tmp_path, monkeypatch, inputs,
                                              reference):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(OFFLINE_ENV, "1")
    assert weights_lib.cache_dir() == str(tmp_path)
    cached = tmp_path / IMAGENET_WEIGHTS_FILE
    with pytest.raises(ValueError, match=r"not in the cache.*convert-torchvision "
                                         r"googlenet-1378be20\.pth") as error:
        GoogLeNet(variant="torchvision", weights="imagenet")
    assert str(cached) in str(error.value)
    assert not cached.exists()

    # A state dict dropped in the cache is converted on first use.
    shutil.copyfile(state_npz, tmp_path / "googlenet-1378be20.npz")
    model = GoogLeNet(variant="torchvision", weights="imagenet", classifier_activation=None)
    assert cached.is_file()
    assert np.abs(model.predict(inputs, verbose=0) - reference["logits"]).max() < TOLERANCE

    with pytest.warns(UserWarning, match="auxiliary heads have no ImageNet weights"):
        with_aux = GoogLeNet(variant="torchvision", weights="imagenet", include_aux=True,
                             classifier_activation=None)
    outputs = with_aux.predict(inputs, verbose=0)
    assert np.abs(outputs["main"] - reference["logits"]).max() < TOLERANCE


def test_imagenet_weights_need_the_torchvision_topology(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="classes=1000"):
        GoogLeNet(variant="torchvision", weights="imagenet", classes=10,
                  input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="width_multiplier=1.0"):
        GoogLeNet(variant="torchvision", weights="imagenet", width_multiplier=0.5,
                  include_top=False, input_shape=(64, 64, 3))


@pytest.mark.slow
def test_backbone_port_and_keras_output_with_model_card(state_npz, tmp_path, inputs, ported):
    backbone, report = weights_lib.from_torchvision(
        state_npz, include_top=False, pooling="avg", return_report=True
    )
    assert set(report.skipped) >= {"fc.weight", "fc.bias"}
    features = backbone.predict(inputs[:1], verbose=0)
    full, _ = ported
    head = full.get_layer("predictions")
    np.testing.assert_allclose(
        features @ head.kernel.numpy() + head.bias.numpy(),
        full.predict(inputs[:1], verbose=0)["main"], atol=TOLERANCE,
    )

    from keras_googlenet.runtime import load_predictor

    out = tmp_path / "googlenet_imagenet.keras"
    weights_lib.convert_torchvision(state_npz, out)
    with open(f"{out}.json", encoding="utf-8") as f:
        card = json.load(f)
    assert card["model"]["variant"] == "torchvision"
    assert card["preprocessing"]["mode"] == "tf"
    assert card["preprocessing"]["input_range"] == [-1.0, 1.0]
    assert card["labels"][0] == "tench" and len(card["labels"]) == 1000
    assert card["source"]["weights"]["url"] == TORCHVISION_URL
    predictor = load_predictor(str(out))
    probs = predictor.predict(inputs)
    best = int(np.argmax(probs[0]))
    assert predictor.label(best) == card["labels"][best]
    np.testing.assert_array_equal(probs.argmax(-1), full.predict(inputs, verbose=0)["main"]
                                  .argmax(-1))


def test_a_cache_file_that_is_not_converted_weights_says_how_to_remake_it(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    (tmp_path / IMAGENET_WEIGHTS_FILE).write_bytes(b"not an HDF5 file")
    with pytest.raises(ValueError, match=r"is not a converted main-head .*rerun "
                                         r"`python -m keras_googlenet convert-torchvision"):
        GoogLeNet(variant="torchvision", weights="imagenet", input_shape=(64, 64, 3))
