import numpy as np
import pytest

from keras_googlenet import decode_predictions, preprocess_input
from keras_googlenet.preprocessing import imagenet_class_index


@pytest.mark.parametrize("variant", ["v1", "v1_bn", "torchvision", "factorized"])
def test_preprocess_input_scales_to_minus_one_one(variant):
    x = np.array([[[[0, 127.5, 255]]]], dtype="float32")
    np.testing.assert_allclose(preprocess_input(x.copy(), variant=variant), [[[[-1, 0, 1]]]])


def test_preprocess_input_accepts_uint8_and_mode_override():
    x = np.full((1, 2, 2, 3), 255, dtype="uint8")
    assert preprocess_input(x).max() == pytest.approx(1.0)
    caffe = preprocess_input(np.zeros((1, 1, 1, 3), "float32"), mode="caffe")
    np.testing.assert_allclose(caffe[0, 0, 0], [-103.939, -116.779, -123.68], rtol=1e-5)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        preprocess_input(x, mode="zero_one")
    with pytest.raises(ValueError, match="`variant` must be one of"):
        preprocess_input(x, variant="v9")


def test_decode_predictions_uses_the_shipped_class_index():
    preds = np.zeros((2, 1000), "float32")
    preds[0, 0], preds[0, 1] = 0.9, 0.1
    preds[1, 999] = 1.0
    decoded = decode_predictions(preds, top=2)
    assert decoded[0][0] == ("n01440764", "tench", pytest.approx(0.9))
    assert decoded[0][1][:2] == ("n01443537", "goldfish")
    assert decoded[1][0][:2] == ("n15075141", "toilet_tissue")
    assert len(decoded[1]) == 2


def test_decode_predictions_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"shape \(samples, 1000\)"):
        decode_predictions(np.zeros((1, 10)))
    with pytest.raises(ValueError, match="`top`"):
        decode_predictions(np.zeros((1, 1000)), top=0)


def test_decode_predictions_ranks_ties_to_the_lower_index():
    preds = np.zeros((1, 1000), "float32")
    preds[0, [999, 500, 2]] = 0.25  # three-way tie, then 997 zeros
    decoded = decode_predictions(preds, top=4)[0]
    index = imagenet_class_index()
    assert [d[0] for d in decoded] == [index[i][0] for i in (2, 500, 999, 0)]
    # Integer scores rank as numbers: negating uint8 must not wrap around.
    counts = np.zeros((1, 1000), "uint8")
    counts[0, 7], counts[0, 3] = 200, 1
    assert [d[0] for d in decode_predictions(counts, top=2)[0]] == [index[7][0], index[3][0]]
