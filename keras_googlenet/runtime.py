"""Load any exported GoogLeNet artefact behind one `Predictor` (docs/export.md, "Python"); its
model card supplies labels, input size and preprocessing."""

import numbers
import os
import zipfile

import numpy as np

from keras_googlenet import checks, scores
from keras_googlenet.errors import first_line
from keras_googlenet.model_card import OUTPUT_NAME, describe_source, read_model_card
from keras_googlenet.preprocessing import EVAL_CROP_FRACTION, resize_pixels

__all__ = [
    "KerasPredictor", "ONNXPredictor", "Predictor", "SavedModelPredictor", "TFLitePredictor",
    "detect_format", "load_image", "load_keras_model", "load_predictor",
]


def load_keras_model(path, what="model"):
    """`keras.saving.load_model(path, compile=False)`, with a clear error for a file that
    is not a `.keras` archive (Keras would say "File not found" although it exists)."""
    import keras

    if not zipfile.is_zipfile(path):
        raise ValueError(f"`{what}` {os.fspath(path)!r} is not a valid .keras archive (not a "
                         "zip file: truncated or another format).")
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"`{what}` {os.fspath(path)!r} is not a valid .keras archive or holds "
                         f"a model that cannot be rebuilt: {first_line(error)}") from None


def detect_format(path):
    """`"keras"`, `"savedmodel"`, `"tflite"` or `"onnx"` for an artefact path."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path!r}")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return SavedModelPredictor.format
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory without saved_model.pb; expected a SavedModel "
                         "directory, a '.keras', '.tflite' or '.onnx' file.")
    fmt = os.path.splitext(path)[1].lower()[1:]
    if fmt in (KerasPredictor.format, TFLitePredictor.format, ONNXPredictor.format):
        return fmt
    raise ValueError(f"cannot tell the format of {path!r}: expected a '.keras', '.tflite' or "
                     "'.onnx' file or a SavedModel directory.")


class Predictor:
    """Common interface: `predict(x)` -> probabilities, `classify(images)` -> top-k labels.

    Attributes:
        path: the artefact.
        format: `"keras"`, `"savedmodel"`, `"tflite"` or `"onnx"`.
        card: the model card dict (read from the sidecar JSON, or inferred for `.keras`).
        input_size: (height, width) the model expects.
        labels: class names (`card["labels"]`), or `None`.
    """

    format = None

    def __init__(self, path, card, input_shape):
        self.path = os.fspath(path)
        self.card = (card if card is not None else read_model_card(self.path)) or {}
        size = self.card.get("model", {}).get("input_size")
        if not size and all(isinstance(v, numbers.Integral) for v in input_shape[1:3]):
            size = tuple(input_shape[1:3])  # no size in the card: the artefact's own
        self.input_size = tuple(int(v) for v in size) if size else None
        self.labels = self.card.get("labels")
        # None without a card: `predict` then tells probabilities from logits by their rows.
        self.output_activation = (self.card.get("output") or {}).get("activation")
        self._tolerance = scores.PROBABILITY_TOLERANCE  # how far a probability row may sum from 1

    @property
    def output_is_probability(self):
        """True/False as the card says; None when unknown (decided per batch by `predict`)."""
        activation = self.output_activation
        return None if activation in scores.UNKNOWN_ACTIVATIONS else activation == scores.SOFTMAX

    def _run(self, x):
        """The raw float32 output for a float32 batch: each runtime implements it."""
        raise NotImplementedError

    def predict(self, x, batch_size=32):
        """Probabilities for a float32 batch of model inputs (N, H, W, 3): images scaled with
        `x / 127.5 - 1`, or RGB pixels in [0, 255] when the card says the preprocessing is
        inside (`card["preprocessing"]["in_model"]`). `preprocess_images` makes either."""
        x = np.asarray(x, dtype="float32")
        x = x[None] if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"`x` must be images of shape (N, H, W, 3); received {x.shape}.")
        if self.input_size and tuple(x.shape[1:3]) != self.input_size:
            raise ValueError(f"this model takes {self.input_size[0]}x{self.input_size[1]} images; "
                             f"received {x.shape[1]}x{x.shape[2]}. Use `preprocess_images` to "
                             "resize.")
        if not len(x):
            raise ValueError("`x` is an empty batch: pass at least one image.")
        outputs = [self._run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        y = np.concatenate(outputs, axis=0).astype("float32")
        if y.ndim != 2:  # e.g. include_top=False: feature maps, not class scores
            raise ValueError(f"{self.path!r} is not a classifier: its output has shape "
                             f"{tuple(y.shape[1:])} per image, expected (classes,).")
        finite_rows = np.all(np.isfinite(y), axis=1)
        if not finite_rows.all():  # NaN probabilities would still sort into a confident top-k
            raise ValueError(
                f"{self.path!r} produced non-finite outputs (NaN/inf) for "
                f"{int(np.sum(~finite_rows))} of {len(y)} image(s): its weights are corrupt "
                "(a diverged training run?).")
        return scores.as_probabilities(y, self.output_activation, self._tolerance)

    def preprocess_images(self, images):
        """Decode/resize/scale images (paths, PIL images or uint8 arrays) for this model."""
        if not self.input_size:
            raise ValueError("the model card gives no input size; pass preprocessed arrays.")
        if not len(images):
            raise ValueError("`images` is empty: pass at least one image.")
        preprocessing = self.card.get("preprocessing", {})
        crop = preprocessing.get("central_crop", EVAL_CROP_FRACTION)
        # A model with its preprocessing inside takes the resized pixels as they are.
        return resize_pixels([_rgb_pixels(image) for image in images], self.input_size, crop,
                             scale=not preprocessing.get("in_model", False))

    def classify(self, images, top_k=5):
        """`top_k` of each image (paths, PIL images or arrays)."""
        return [self.top_k(row, top_k) for row in self.predict(self.preprocess_images(images))]

    def top_k(self, probs, k=5):
        """The `k` best classes of one row of probabilities, best first (ties to the lower
        index): `[{"label", "index", "probability"}, ...]`."""
        return [{"label": self.label(i), "index": int(i), "probability": float(probs[i])}
                for i in scores.top_indices(probs, checks.positive_int("top_k", k))]

    def label(self, index):
        """The name of class `index`, or the index as text where the card names none."""
        index = int(index)
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)


class KerasPredictor(Predictor):
    format = "keras"

    def __init__(self, path, card=None, num_threads=None, model=None):
        import tensorflow as tf

        from keras_googlenet.heads import inference_model

        model = load_keras_model(path) if model is None else model
        # A loaded Sequential has no symbolic output until called: getattr's None.
        if isinstance(getattr(model, "output", None), (dict, list, tuple)):
            model = inference_model(model)
        self.model = model
        super().__init__(path, describe_source(path, model) if card is None else card,
                         model.input_shape)
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def _run(self, x):
        return np.asarray(self._fn(x), dtype="float32")


class SavedModelPredictor(Predictor):
    format = "savedmodel"

    def __init__(self, path, card=None, num_threads=None):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(os.fspath(path))
        except (OSError, ValueError, tf.errors.OpError) as error:  # e.g. a corrupt .pb
            raise ValueError(f"{os.fspath(path)!r} is not a valid SavedModel directory: "
                             f"{first_line(error)}") from None
        if "serving_default" not in loaded.signatures:
            raise ValueError(f"SavedModel {os.fspath(path)!r} has no signature 'serving_default';"
                             f" it has {sorted(loaded.signatures)}.")
        self.loaded, self.signature = loaded, loaded.signatures["serving_default"]
        (self.input_name, spec), = self.signature.structured_input_signature[1].items()
        super().__init__(path, card, spec.shape.as_list() if spec.shape.rank else ())
        outputs = list(self.signature.structured_outputs)
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]

    def _run(self, x):
        return self.signature(**{self.input_name: x})[self.output_name].numpy()


class TFLitePredictor(Predictor):
    format = "tflite"

    def __init__(self, path, card=None, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
            self._allocate()
        except (ValueError, RuntimeError) as error:  # LiteRT's words never name the file
            raise ValueError(f"{os.fspath(path)!r} is not a valid TFLite model: "
                             f"{first_line(error)}") from None
        super().__init__(path, card, self.input["shape"])
        if np.issubdtype(np.dtype(self.output["dtype"]), np.integer):
            # Each quantized score is off by up to half a step, so the row sum by `classes` halves.
            self._tolerance += 0.5 * float(self.output["quantization"][0]) * int(
                self.output["shape"][-1])

    def _allocate(self):
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _run(self, x):
        if len(x) != self.input["shape"][0]:
            self.interpreter.resize_tensor_input(self.input["index"], [len(x), *x.shape[1:]])
            self._allocate()
        dtype = np.dtype(self.input["dtype"])
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self.input["quantization"]
            x = np.clip(np.round(x / scale + zero_point), np.iinfo(dtype).min, np.iinfo(dtype).max)
        self.interpreter.set_tensor(self.input["index"], x.astype(dtype))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if not np.issubdtype(y.dtype, np.integer):
            return y.astype("float32")
        scale, zero_point = self.output["quantization"]
        return (y.astype("float32") - zero_point) * scale


class ONNXPredictor(Predictor):
    format = "onnx"

    def __init__(self, path, card=None, num_threads=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(os.fspath(path), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types (InvalidProtobuf, ...)
            raise ValueError(f"{os.fspath(path)!r} is not a valid ONNX model: "
                             f"{first_line(error)}") from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        super().__init__(path, card, model_input.shape)

    def _run(self, x):
        return self.session.run(None, {self.input_name: x})[0]


_PREDICTORS = {cls.format: cls for cls in (KerasPredictor, SavedModelPredictor,
                                             TFLitePredictor, ONNXPredictor)}


def load_predictor(path, num_threads=None, card=None):
    """A `Predictor` for a `.keras` file, SavedModel directory, `.tflite` or `.onnx` file.

    Args:
        path: the artefact. Its model card (`<path>.json`) supplies labels, input size and
            preprocessing; a `.keras` file without one is described from its layers and a
            `labels.txt`/`config.json` next to it.
        card: the model card to use instead of the one next to `path`.
        num_threads: CPU threads for TFLite and onnxruntime (`None`: the runtime's default;
            TensorFlow's pools are process-wide: set them with `tf.config.threading`).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError("`path` must be the path of a .keras, .tflite or .onnx file or a "
                         f"SavedModel directory; received {path!r}.")
    checks.positive_int("num_threads", num_threads, optional=True)
    card = read_model_card(path) if card is None else card
    return _PREDICTORS[detect_format(path)](path, card=card, num_threads=num_threads)


def load_image(image, size):
    """An image (path, PIL image or HxW[x3] array) as float32 `size` RGB in [-1, 1]: decoded
    with PIL, then cropped, resized and scaled as training evaluates (`resize_pixels`). An
    image over `input_files.MAX_IMAGE_PIXELS` is refused before decoding."""
    return resize_pixels(_rgb_pixels(image), size)


def _rgb_pixels(image):
    """An image (path, PIL image or HxW[x1|3|4] array) as its RGB pixels (H, W, 3)."""
    from PIL import Image

    from keras_googlenet.input_files import check_pixel_budget, pil_to_rgb8, read_rgb8

    if isinstance(image, (str, os.PathLike)):
        return read_rgb8(image)  # refuses a decompression bomb before decoding
    if isinstance(image, Image.Image):
        check_pixel_budget(image)  # a lazily opened image is decoded only now
        return pil_to_rgb8(image)
    pixels = np.asarray(image)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an HxWx3 image array; received shape {pixels.shape}.")
    pixels = np.broadcast_to(pixels[..., :3], (*pixels.shape[:2], 3))
    if not pixels.size:
        return pixels
    # Only RGB pixels in [0, 255]: a float image in [0, 1] (or already preprocessed to
    # [-1, 1]) would be read as a nearly black picture, confidently wrong.
    integral = np.issubdtype(pixels.dtype, np.integer) or pixels.dtype == bool
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    if not np.all(np.isfinite(pixels)) or low < 0 or high > 255:
        hint = (" (scale 16-bit images by 1/257)" if integral
                else " (already preprocessed? pass them to `predict`)" if low < 0 else "")
    elif not integral and 0 < high <= 1:
        hint = ", which look like a [0, 1] image: multiply by 255 (or pass uint8)"
    else:
        return pixels
    raise ValueError(f"image arrays must hold RGB pixels in [0, 255]; received {pixels.dtype} "
                     f"values in [{low:g}, {high:g}]{hint}.")
