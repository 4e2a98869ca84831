"""`folder:PATH` datasets: one sub-folder of images per class, optionally under `PATH/train`
and `PATH/val`. Every file is checked up front (`image_files`); unreadable ones are skipped
and reported."""

from __future__ import annotations

import logging
import os

import numpy as np

from keras_googlenet.input_files import ImageTooLargeError
from keras_googlenet_training.image_files import decoding_dataset, scan_images
from keras_googlenet_training.splits import DatasetSplits, hold_out_description, stratified_split

logger = logging.getLogger("keras_googlenet.data")

VAL_FOLDER_NAMES = ("val", "validation")
# Decoded-image shuffle buffer for folder datasets, whose file order is already shuffled.
FOLDER_SHUFFLE_BUFFER = 256


def load_folder(spec, path, seed, val_fraction):
    """`load_dataset` for `folder:PATH`: a `DatasetSplits` of the folder's readable images."""
    root, train_root, val_root, class_names = _folder_layout(spec, path)
    train_files, train_labels, val_files, val_labels = _listed_files(
        root, train_root, val_root, class_names)
    readable, use_pil, skipped = _readable(train_files + val_files, root)

    def keep(files, labels, offset):
        mask = readable[offset : offset + len(files)]
        return (
            np.array(files, dtype=object)[mask].astype(str),
            np.array(labels, dtype=np.int32)[mask],
            use_pil[offset : offset + len(files)][mask],
        )

    files, labels, pil = keep(train_files, train_labels, 0)
    empty = [class_names[c] for c in range(len(class_names)) if not np.any(labels == c)]
    if empty:
        raise ValueError(f"`dataset`: classes without a readable image in {train_root}: {empty}.")
    if val_root:
        val_files, val_labels, val_pil = keep(val_files, val_labels, len(train_files))
        order = np.random.default_rng(seed).permutation(len(files))  # mix the classes
        files, labels, pil = files[order], labels[order], pil[order]
    else:
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
        val_files, val_labels, val_pil = files[val_idx], labels[val_idx], pil[val_idx]
        files, labels, pil = files[train_idx], labels[train_idx], pil[train_idx]
    if len(val_files) == 0:
        raise ValueError(
            f"`dataset`: {spec!r} leaves no validation images; add images or a val/ folder."
        )

    return DatasetSplits(
        train=decoding_dataset(files, labels, pil, shuffle_seed=seed),
        train_for_epoch=lambda epoch: decoding_dataset(files, labels, pil, shuffle_seed=seed,
                                                       epoch=epoch),
        val=decoding_dataset(val_files, val_labels, val_pil),
        class_names=class_names,
        num_train=len(files),
        num_val=len(val_files),
        source=spec,
        skipped=skipped,
        shuffle_buffer=FOLDER_SHUFFLE_BUFFER,
        val_split=(f"{os.path.basename(val_root)}/ folder" if val_root
                   else hold_out_description(val_fraction, seed, of="folder, per class")),
    )


def _folder_layout(spec, path):
    """`(root, train_root, val_root, class_names)`: `val_root` is None unless the folder
    holds `train/` and `val/` (or `validation/`) trees, `train_root` is then `root/train`."""
    root = os.path.expanduser(path)
    if not os.path.isdir(root):
        raise ValueError(f"`dataset`: folder {path!r} does not exist or is not a directory.")
    val_root = next(
        (os.path.join(root, n) for n in VAL_FOLDER_NAMES if os.path.isdir(os.path.join(root, n))),
        None,
    )
    if not os.path.isdir(os.path.join(root, "train")):
        val_root = None
    train_root = os.path.join(root, "train") if val_root else root

    class_names = _class_folders(train_root)
    if len(class_names) < 2:
        raise ValueError(
            f"`dataset`: {spec!r} needs one sub-folder of images per class and at least two "
            f"classes; found {len(class_names)} in {train_root} ({class_names})."
        )
    if val_root:
        extra = sorted(set(_class_folders(val_root)) - set(class_names))
        if extra:
            raise ValueError(
                f"`dataset`: {val_root} has classes that {train_root} lacks: {extra}. "
                "Train and val must use the same class sub-folders."
            )
    return root, train_root, val_root, class_names


def _listed_files(root, train_root, val_root, class_names):
    """`(train_files, train_labels, val_files, val_labels)`, each real file once."""
    # The dataset's own folders are never walked into again through a link.
    seen = _real_dirs([root, train_root, val_root] + [
        os.path.join(tree, name) for tree in (train_root, val_root) if tree
        for name in class_names])
    train_files, train_labels, duplicates = _list_files(train_root, class_names, seen)
    val_files, val_labels, val_duplicates = (
        _list_files(val_root, class_names, seen) if val_root else ([], [], []))
    duplicates += val_duplicates
    if duplicates:
        logger.warning(
            "Counted once: %d paths in %s lead to a file already listed (symlinks or hard "
            "links), e.g. %s", len(duplicates), root, duplicates[:5])
    return train_files, train_labels, val_files, val_labels


def _readable(files, root):
    """`(readable, use_pil, skipped)` of `files` (see `scan_images`); the skipped logged."""
    try:
        readable, use_pil = scan_images(files)
    except ImageTooLargeError as error:
        raise ImageTooLargeError(
            f"`dataset`: {str(error).rstrip('.')} or move it out of {root}.") from None
    skipped = [f for f, ok in zip(files, readable, strict=True) if not ok]
    if skipped:
        logger.warning(
            "Skipped %d of %d files in %s that are not readable images (corrupt, truncated "
            "or not images), e.g. %s", len(skipped), len(readable), root, skipped[:5])
    return readable, use_pil, skipped


def _class_folders(root):
    """The class sub-folders of `root`, sorted; their names become the labels as they are."""
    names = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    for name in names:
        if not _is_utf8(name) or "\n" in name or "\r" in name:
            # labels.txt, the model card and TFLite metadata hold one UTF-8 name a line
            raise ValueError(
                f"`dataset`: class folder {os.fsencode(name)!r} in {root} is not a UTF-8 "
                "name on one line; rename it (its name becomes the class label).")
    return names


def _is_utf8(name):
    try:
        name.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        return True
    except UnicodeEncodeError:
        return False


def _list_files(root, class_names, seen):
    """Image paths and labels under `root/<class>/`, each real file once.

    Directory symlinks are followed (a class folder may live elsewhere), but each real
    directory is walked once, so a link back up (`class/loop -> ..`) is no loop; a file
    reachable by several paths (symlinks, hard links) is listed at its first path only.
    `seen` (real directories and files; it starts with the dataset's own folders, which a
    link never re-enters) is shared by the train and val trees, so no file is in both.
    Returns `(files, labels, duplicates)`: `duplicates` are the paths dropped.
    """
    files, labels, duplicates = [], [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(root, name)
        if not os.path.isdir(class_dir):
            continue  # a val/ tree may lack some classes
        pending = [class_dir]
        while pending:  # depth-first, in sorted order: the order os.walk gave before
            directory = pending.pop()
            if directory != class_dir and not _first_visit(directory, seen):
                continue
            subdirs, entries = [], []
            try:
                with os.scandir(directory) as scan:
                    entries = sorted(scan, key=lambda entry: entry.name)
            except OSError as error:
                logger.warning("Skipped folder %s: %s", directory, error)
            for entry in entries:
                if entry.name.startswith("."):  # .DS_Store and friends
                    continue
                if _is_dir(entry):
                    subdirs.append(entry.path)
                elif _first_visit(entry.path, seen):
                    files.append(entry.path)
                    labels.append(label)
                else:
                    duplicates.append(entry.path)
            pending.extend(reversed(subdirs))
    return files, labels, duplicates


def _real_dirs(paths):
    """The `(device, inode)` keys of the existing directories among `paths`."""
    keys = set()
    for path in paths:
        if path and os.path.isdir(path):
            info = os.stat(path)
            keys.add((info.st_dev, info.st_ino))
    return keys


def _is_dir(entry):
    try:
        return entry.is_dir()  # follows a symlink
    except OSError:
        return False


def _first_visit(path, seen):
    """Whether the real file or directory at `path` is seen for the first time (and mark
    it). A path that cannot be resolved (a broken link) counts as new: the image check
    then reports it as unreadable."""
    try:
        info = os.stat(path)
        key = (info.st_dev, info.st_ino)
    except OSError:
        key = ("unresolved", os.path.abspath(path))
    if key in seen:
        return False
    seen.add(key)
    return True
