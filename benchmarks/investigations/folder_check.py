"""How long `folder:` datasets spend checking their images before training starts.

    python benchmarks/investigations/folder_check.py   # 400 synthetic 500x375 JPEGs
    python benchmarks/investigations/folder_check.py /data/imagenet/train --limit 5000

`load_dataset("folder:PATH")` decodes every file once up front so that unreadable ones are
skipped and reported before training (docs/training.md). This times that check on the
given folder's images (or, by default, on 500x375 JPEGs, ImageNet's typical size, made
from smooth gradients plus noise at quality 90) and prints ms per file and the projection
for ImageNet's 1,281,167 training images. Not a test.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

IMAGENET_TRAIN_IMAGES = 1_281_167


def synthetic_jpegs(folder, count=400, size=(500, 375)):
    from PIL import Image

    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).normal(0, 10, (height, width, 3))
    pixels = np.stack([(x * 0.5) % 256, (y * 0.7) % 256, ((x + y) * 0.3) % 256], -1) + noise
    path = os.path.join(folder, "0.jpg")
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    with open(path, "rb") as f:
        data = f.read()
    for i in range(1, count):
        with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
            f.write(data)
    return sorted(glob.glob(os.path.join(folder, "*.jpg")))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", help="a folder of images (searched recursively)")
    p.add_argument("--limit", type=int, default=None, help="check at most this many files")
    args = p.parse_args(argv)
    from keras_googlenet_training.image_files import scan_images

    with tempfile.TemporaryDirectory() as tmp:
        if args.folder is None:
            files = synthetic_jpegs(tmp)
            what = "synthetic 500x375 JPEGs"
        else:
            if not os.path.isdir(args.folder):
                p.error(f"folder {args.folder!r} does not exist")
            files = sorted(f for f in glob.glob(os.path.join(args.folder, "**", "*"),
                                                recursive=True) if os.path.isfile(f))
            what = args.folder
        files = files[: args.limit] if args.limit else files
        if not files:
            p.error("no files to check")
        start = time.perf_counter()
        readable, _ = scan_images(files)
        seconds = time.perf_counter() - start
    per_file = seconds / len(files)
    print(f"{len(files)} files ({what}), {int(readable.sum())} readable: {seconds:.2f} s, "
          f"{per_file * 1e3:.2f} ms a file on {os.cpu_count()} cores; ImageNet's train split "
          f"would take {per_file * IMAGENET_TRAIN_IMAGES / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
