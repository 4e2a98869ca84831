"""The user's input files, read safely: images within a pixel budget, decoded to 8-bit RGB
alike for training and predict; names as UTF-8 text."""

import codecs
import contextlib
import os

import numpy as np

__all__ = ["HIGH_BIT_DEPTH_MODES", "MAX_IMAGE_PIXELS", "ImageTooLargeError", "check_pixel_budget",
           "open_image", "pil_to_rgb8", "read_lines", "read_rgb8"]

# The largest image decoded from a file: 50 megapixels, ~150 MB as 8-bit RGB (an 8,000 x 6,000
# photo fits). A file of a few KB can claim far more (a 1-bit 100,000 x 100,000 PNG is 30 GB
# decoded) and PIL only warns up to 179 megapixels, so this check runs first, on the header.
MAX_IMAGE_PIXELS = 50_000_000


class ImageTooLargeError(ValueError):
    """An image whose header says it would decode to more than `MAX_IMAGE_PIXELS`."""


def _image(name):
    return f"image {name!r}" if name else "image"


def _over_budget(name, claim):
    return ImageTooLargeError(
        f"{_image(name)} {claim}, over the {MAX_IMAGE_PIXELS / 1e6:g}-megapixel budget "
        "(keras_googlenet.input_files.MAX_IMAGE_PIXELS); refused before decoding: downscale it.")


def check_pixel_budget(image, name=None):
    """Raise `ImageTooLargeError` naming the file if PIL `image` (opened, not necessarily
    decoded) has more than `MAX_IMAGE_PIXELS` pixels."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise _over_budget(name, f"is {width}x{height} ({width * height / 1e6:.1f} megapixels)")


@contextlib.contextmanager
def open_image(path):
    """The PIL image of `path`, its header read and size checked, not yet decoded. Raises
    `ImageTooLargeError` (a `ValueError`) naming the file for an image over the pixel
    budget; PIL's own errors for files that are not images pass through."""
    from PIL import Image

    name = os.fsdecode(path)
    try:
        image = Image.open(name)
    except Image.DecompressionBombError:  # PIL refuses past ~179 megapixels
        raise _over_budget(name, f"claims more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                                 "megapixels") from None
    with image:
        check_pixel_budget(image, name)
        yield image


def read_lines(path, what="file"):
    """The non-blank lines of a UTF-8 text file of names (a UTF-8 or UTF-16 byte-order mark
    is honoured and removed; lines end in LF, CRLF or CR), exactly as written: a name keeps
    its accents, scripts and inner spaces. `what` names the file in errors."""
    name = os.fsdecode(path)
    with open(name, "rb") as f:
        raw = f.read()
    encoding = "utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) \
        else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} {name!r} is not {encoding.upper().replace('-SIG', '')} text (bad byte "
            f"0x{raw[error.start]:02x} at offset {error.start}); save it as UTF-8.") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line for line in lines if line.strip()]


# PIL modes that `Image.convert("RGB")` would clip to 8 bits instead of scaling.
HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def pil_to_rgb8(image, name=None):
    """A PIL image as uint8 RGB pixels (H, W, 3). 16-bit images are divided by 257 and float
    ones in [0, 1] multiplied by 255, which PIL's `convert("RGB")` would clip (a full-range
    16-bit gradient turns 99.6 % white); other 32-bit ranges are refused, never clipped."""
    if image.mode not in HIGH_BIT_DEPTH_MODES:
        return np.asarray(image.convert("RGB"))
    values, what = np.asarray(image), _image(name)
    if image.mode == "F":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if not np.all(np.isfinite(values)) or low < 0 or high > 1:
            raise ValueError(f"{what} has float pixels in [{low:g}, {high:g}]; only float "
                             "images in [0, 1] can be read (save it as 8 or 16 bits).")
        gray = np.round(values.astype("float64") * 255.0)
    else:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ValueError(f"{what} has 32-bit pixels in [{low}, {high}]; only 8- and 16-bit "
                             "images can be read.")
        gray = np.round(values.astype("float64") / 257.0)  # 65535 -> 255
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)


def read_rgb8(path):
    """The image file `path` as `pil_to_rgb8` pixels, refused over the pixel budget before
    decoding (`open_image`): the one decoder of training's PIL path and of predict."""
    with open_image(path) as image:
        return pil_to_rgb8(image, name=os.fsdecode(path))
