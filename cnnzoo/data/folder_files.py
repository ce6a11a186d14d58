"""The files of an image folder: the folder checked, its class folders listed, each file checked once.

`image_folder` (`cnnzoo.data.folders`) reads `<path>/<class>/<image>` through
these: `check_root` (the path is a folder), `list_files` (one label per class
folder, nested folders counted for their top folder; other files reported),
`check_files` (plain JPEGs and PNGs by their header, the rest with Pillow, in
threads) and `check_classes` (every class keeps an image). No TensorFlow here.
"""

import concurrent.futures
import os
from pathlib import Path

import numpy as np

from cnnzoo.data.images import IMAGE_EXTENSIONS, check_image, read_header
from cnnzoo.errors import DataError, DataNotFoundError

__all__ = ["check_root", "list_files", "check_files", "check_classes"]


def check_root(path):
    """`path` as a `Path` to an existing folder; a clear error otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"`path` must be a folder path (str or Path). Received: path={path!r}.")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataNotFoundError(
            f"`path` must be an existing folder of class sub-folders "
            f"(`<path>/<class>/<image>`). Received: path={str(root)!r}, which does not exist."
        )
    if not root.is_dir():
        raise DataError(
            f"`path` must be a folder of class sub-folders, not a file. Received: path={str(root)!r}. "
            f"Pass its parent folder, or use `cnnzoo.data.load_image` for one image."
        )
    return root


def list_files(root, class_names):
    """`(classes, files, labels, skipped)`: the image files of each class folder, in order, and
    `(path, reason)` for the files left out (outside a class folder, or not an image type)."""
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise DataError(
            f"`path` must hold one sub-folder per class (`<path>/<class>/<image>`); "
            f"{str(root)!r} has none. Received: path={str(root)!r}."
        )
    if class_names is not None and set(class_names) != set(folders):
        raise DataError(
            f"`class_names` must name exactly the sub-folders of {str(root)!r}: missing folders "
            f"{sorted(set(class_names) - set(folders))}, unlisted folders "
            f"{sorted(set(folders) - set(class_names))}. Received: class_names={list(class_names)!r}."
        )
    classes = list(class_names) if class_names is not None else folders
    skipped = [
        (str(p), "not inside a class folder")
        for p in sorted(root.iterdir())
        if p.is_file() and not p.name.startswith(".")
    ]
    files, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                p = os.path.join(dirpath, fname)
                if fname.startswith("."):
                    continue
                if os.path.splitext(fname)[1].lower() not in IMAGE_EXTENSIONS:
                    skipped.append(
                        (
                            p,
                            f"extension {os.path.splitext(fname)[1] or '(none)'!r} is not an image "
                            f"type cnnzoo reads ({', '.join(IMAGE_EXTENSIONS)})",
                        )
                    )
                    continue
                files.append(p)
                labels.append(label)
    return classes, files, labels, skipped


def check_files(files, labels, max_pixels, full):
    """`(files, labels, headers, bad)`: the files that pass their check, their labels and
    `read_header` results, and `(path, reason)` for the ones that fail."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels  # looked up once, not per file
    headers = [read_header(f, limit) for f in files]  # plain JPEGs and PNGs: one or two reads each, no decoding
    slow = [i for i, header in enumerate(headers) if header is None or full]
    workers = min(32, 4 * (os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # Pillow and file I/O release the GIL
        found = dict(zip(slow, pool.map(lambda i: check_image(files[i], max_pixels, full), slow)))
    good = [i for i in range(len(files)) if found.get(i) is None]
    bad = [(files[i], found[i]) for i in slow if found[i] is not None]
    return [files[i] for i in good], [labels[i] for i in good], [headers[i] for i in good], bad


def check_classes(root, classes, labels, skipped):
    """Raises `DataError` when a class folder keeps no readable image."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if not empty:
        return
    reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
    raise DataError(
        f"`path` must hold at least one readable image per class folder; {empty} in {str(root)!r} "
        f"hold none{' (skipped files: ' + reasons + ')' if reasons else ''}. Add images, or remove "
        f"the folder. Received: path={str(root)!r}."
    )
