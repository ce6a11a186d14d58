"""Image files -> uint8 tensors inside tf.data, in parallel, never stopping an epoch.

`image_folder` reads the plain JPEGs and PNGs (`cnnzoo.data.images.read_header`)
with TensorFlow: `decode_jpeg` at Pillow's draft scale with libjpeg's accurate
IDCT, `decode_png`, grayscale by Pillow's integer luma, then a bilinear resize.
Every other file, and any file TensorFlow fails to decode, is read with Pillow
(`load_image`) through `tf.numpy_function`. A file neither can decode becomes a
blank image, is logged once and is added to the folder's `skipped`
(`SkippedFiles`), and the epoch goes on.

Each route (a JPEG draft scale, with or without antialiasing; PNG; Pillow) is
its own parallel map, without a branch per image, and `choose_from_datasets`
merges them back in file order. A failed TensorFlow decode cannot be caught
inside a map function, so each map runs under `ignore_errors`. Data read in
order (`in_order=True`: validation sets, `shuffle=False`) tags every image with
its position; a `scan` over batches of positions finds the gaps, which Pillow
fills in place. Data shuffled afterwards skips that bookkeeping (a batch, a
scan and an unbatch: two more copies of every image): each decoded file is
marked in a hash table, and once a route's files have all been tried, Pillow
reads the unmarked ones, which so come last in that route's order. The files
are listed when the folder is read, so the first epoch (then cached) is where
failures show. TensorFlow is imported inside the functions that need it.
"""

import logging
import threading
from collections.abc import Sequence

import numpy as np

from cnnzoo.data.images import load_image
from cnnzoo.errors import DataError

__all__ = ["SkippedFiles", "routes", "decoded_images"]

_SCALES = (1, 2, 4, 8)  # JPEG draft scales; routes 0-7 decode a JPEG at scale _SCALES[route // 2], 8-9 a PNG;
PILLOW = 10  # odd routes shrink by half or more (antialiased resize); route PILLOW: Pillow reads the file
_GAP_BATCH = 64  # positions checked for gaps at a time


class SkippedFiles(Sequence):
    """The `(path, reason)` pairs of files left out of an image folder, sorted.

    Those refused when the folder was listed come first to be known; a file
    that fails to decode while training is added when it is found (in the
    first epoch), so this sequence can grow. It compares equal to a tuple or
    list of the same pairs.
    """

    def __init__(self, listed=()):
        self._listed = tuple(listed)
        self._failed = {}
        self._lock = threading.Lock()

    def add(self, path, reason):
        """Records a file that failed to decode; returns True the first time."""
        with self._lock:
            if path in self._failed:
                return False
            self._failed[path] = reason
            return True

    def _items(self):
        with self._lock:
            return tuple(sorted(self._listed + tuple(self._failed.items())))

    def __getitem__(self, index):
        return self._items()[index]

    def __len__(self):
        return len(self._listed) + len(self._failed)

    def __eq__(self, other):
        return (
            isinstance(other, (Sequence, SkippedFiles))
            and not isinstance(other, str)
            and self._items() == tuple(tuple(x) for x in other)
        )

    __hash__ = None

    def __repr__(self):
        return repr(self._items())


def routes(headers, image_size, interpolation):
    """Per file: how it is decoded (a branch of `decoded_images`), from `read_header` results."""
    h, w = image_size
    side = max(h, w)
    out = []
    for header in headers:
        if header is None or interpolation != "bilinear":
            out.append(PILLOW)
            continue
        kind, height, width = header
        route = 8
        if kind == "JPEG":  # Pillow's JpegImageFile.draft: the largest of 8, 4, 2, 1 not above min(W, H) // side
            scale = min(width, height) // side
            if scale >= 2:
                route = 6 if scale >= 8 else 4 if scale >= 4 else 2
                height, width = -(-height // _SCALES[route // 2]), -(-width // _SCALES[route // 2])
            else:
                route = 0
        out.append(route + (height >= 2 * h or width >= 2 * w))
    return out


def decoded_images(
    files, labels, routes, image_size, channels, interpolation, skipped, shuffle_seed=None, in_order=True
):
    """A dataset of `(uint8 image [h, w, channels], int32 label)`, one per file, in file order (or a new
    seeded order each epoch with `shuffle_seed`), with known cardinality.

    `routes` comes from `routes()`; files that fail to decode are added to `skipped` (a `SkippedFiles`).
    With `in_order=False` (for data shuffled afterwards) a file TensorFlow fails to decode comes at the
    end of its route's images instead of in its place, which saves the per-image gap check; its passes
    share one table of decoded files, so they should run one at a time (as `fit` runs its epochs)."""
    import tensorflow as tf

    n = len(files)
    decoder = _Decoder(files, labels, routes, image_size, channels, interpolation, skipped, in_order)
    if shuffle_seed is None:
        ds = decoder.epoch(tf.range(n, dtype=tf.int64))
    else:  # a new order each epoch, from one seeded random number per epoch

        def shuffled(key):
            keys = tf.random.stateless_uniform([n], seed=tf.stack([key, tf.constant(shuffle_seed, tf.int64)]))
            return decoder.epoch(tf.cast(tf.argsort(keys), tf.int64))

        ds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1).flat_map(shuffled)
    return ds.apply(tf.data.experimental.assert_cardinality(n))


def _no_autograph(fn):
    """`fn` kept out of AutoGraph: plain graph code, which converting only slows down."""
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)


class _Decoder:
    """The parts of `decoded_images`: one parallel map per route, merged back in file order.

    `epoch(order)` is one pass over `order` (int64 file indices). Each TensorFlow route decodes its
    files in parallel; with `in_order` a scan over batches of positions finds the files that failed
    (`_fill`), else a hash table per route marks the decoded ones (`_failures_last`). Pillow reads
    what TensorFlow cannot (`_pillow`), and a file neither can read becomes a blank image.
    """

    def __init__(self, files, labels, routes, image_size, channels, interpolation, skipped, in_order):
        import tensorflow as tf

        self.files, self.image_size, self.channels = files, image_size, channels
        self.interpolation, self.skipped, self.in_order = interpolation, skipped, in_order
        self.n = len(files)
        self.h, self.w = image_size
        self.paths = tf.constant([str(f) for f in files])
        self.label_table = tf.constant(list(labels) + [0], tf.int32)  # one extra entry for a part's end sentinel
        self.route_table = tf.constant(list(routes), tf.int32)
        self.blank = np.zeros((self.h, self.w, channels), np.uint8)
        self.used = sorted(set(routes))
        self.seen = (  # per TensorFlow route, the files decoded in this pass (`_failures_last`)
            {}
            if in_order
            else {
                route: tf.lookup.experimental.MutableHashTable(tf.int64, tf.int32, 0)
                for route in self.used
                if route != PILLOW
            }
        )

    def epoch(self, order):
        """The images of `order` (int64 [n] file indices): one part per route, merged back in this order."""
        import tensorflow as tf

        if len(self.used) == 1:
            return self._part(self.used[0], order)
        route_of = tf.gather(self.route_table, order)
        parts = [self._part(route, tf.boolean_mask(order, tf.equal(route_of, route))) for route in self.used]
        choice = tf.searchsorted(tf.constant(self.used, tf.int32), route_of)
        choices = tf.data.Dataset.from_tensor_slices(tf.cast(choice, tf.int64))
        return tf.data.Dataset.choose_from_datasets(parts, choices)

    def _pillow(self, indices):
        """uint8 [len(indices), h, w, channels]: the files read by Pillow (NumPy, in `tf.numpy_function`)."""
        images = []
        for i in indices.tolist():
            path = str(self.files[i])
            try:
                images.append(load_image(path, self.image_size, self.channels, self.interpolation))
            except (DataError, OSError) as e:
                reason = f"failed to decode while training ({e})"
                if self.skipped.add(path, reason):
                    logging.getLogger("cnnzoo").warning(
                        "%s could not be decoded during training (%s). A blank image stands in for it; "
                        "it is listed in the ImageFolder's `skipped`.",
                        path,
                        e,
                    )
                images.append(self.blank)
        return np.stack(images) if images else np.zeros((0, self.h, self.w, self.channels), np.uint8)

    def _with_pillow(self, indices):
        import tensorflow as tf

        images = tf.numpy_function(self._pillow, [indices], tf.uint8, stateful=False)
        return tf.ensure_shape(images, (None, self.h, self.w, self.channels))

    def _with_tensorflow(self, route):
        """The TensorFlow decoder of one route: file index -> uint8 [h, w, channels]."""
        import tensorflow as tf

        decoder, antialias = (*_SCALES, "PNG")[route // 2], bool(route % 2)
        h, w, channels, paths = self.h, self.w, self.channels, self.paths

        def decode(index):
            data = tf.io.read_file(paths[index])
            if decoder == "PNG":
                image = tf.io.decode_png(data, channels=3)
            else:
                image = tf.io.decode_jpeg(data, channels=3, ratio=decoder, dct_method="INTEGER_ACCURATE")
            if channels == 1:  # Pillow's convert("L"): ITU-R 601-2 luma in 16-bit fixed point
                rgb = tf.cast(image, tf.int32)
                image = tf.bitwise.right_shift(
                    rgb[..., 0:1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:3] * 7471 + 32768, 16
                )
            # bilinear: the identity at the same size; antialiased (as Pillow) when shrinking by half or more
            resized = tf.image.resize(image, (h, w), antialias=antialias)
            return tf.cast(resized + 0.5, tf.uint8)  # rounded: the values are within 0-255

        return decode

    def _fill(self, prev, positions, images, order, end):
        """The images of positions prev+1 .. positions[-1] and their labels: the ones missing failed in
        TensorFlow, and Pillow reads them; the end sentinel is dropped."""
        import tensorflow as tf

        start = prev + 1
        count = positions[-1] + 1 - start
        offsets = tf.cast(positions - start, tf.int32)

        def gaps():
            present = tf.scatter_nd(offsets[:, None], tf.ones_like(offsets), [tf.cast(count, tf.int32)])
            missing = tf.cast(tf.where(present == 0)[:, 0], tf.int32)
            again = self._with_pillow(tf.gather(order, tf.cast(missing, tf.int64) + start))
            return tf.dynamic_stitch([offsets, missing], [images, again])

        def whole():
            return images

        images = tf.cond(tf.shape(positions, tf.int64)[0] < count, gaps, whole)
        labels = tf.gather(self.label_table, tf.gather(order, tf.range(start, start + count)))

        def but_sentinel():  # the end sentinel is no image
            return images[:-1], labels[:-1]

        def all_of_them():
            return images, labels

        return tf.cond(positions[-1] == end, but_sentinel, all_of_them)

    def _read(self, index):  # one file with Pillow (a blank image if it cannot either)
        return self._with_pillow(index[None])[0], self.label_table[index]

    def _part(self, route, order):
        """The images of one route, `order` (int64 file indices) in order; every file gives one image."""
        import tensorflow as tf

        m = tf.size(order, tf.int64)
        if route == PILLOW:
            return tf.data.Dataset.from_tensor_slices(order).map(
                _no_autograph(self._read), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        if not self.in_order:
            return self._failures_last(route, order, self.seen[route])
        decode = self._with_tensorflow(route)
        h, w, channels = self.h, self.w, self.channels
        padded = tf.concat([order, [self.n]], 0)

        def tagged(q):  # the image and its position in `order`
            return q, tf.ensure_shape(decode(order[q]), (h, w, channels))

        def check(prev, batch):
            return batch[0][-1], self._fill(prev, *batch, padded, m)

        ds = tf.data.Dataset.range(m).map(
            _no_autograph(tagged), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        ds = ds.ignore_errors()  # a failed decode drops its image; `_fill` sees the gap
        ds = ds.concatenate(tf.data.Dataset.from_tensors((m, tf.constant(self.blank))))  # the end sentinel
        return ds.batch(_GAP_BATCH).scan(tf.constant(-1, tf.int64), _no_autograph(check)).unbatch()

    def _failures_last(self, route, order, decoded):
        """`_part` without the gap check: each file TensorFlow decodes is marked in `decoded` (a hash table
        of file indices); after the last one, Pillow reads the unmarked ones and the marks are cleared."""
        import tensorflow as tf

        decode = self._with_tensorflow(route)
        label_table = self.label_table

        def marked(q):
            index = order[q]
            image = decode(index)
            with tf.control_dependencies([image]):  # marked only once decoded
                mark = decoded.insert(index, tf.constant(1))
            with tf.control_dependencies([mark]):
                return image, label_table[index]  # the image's shape is static: (h, w, channels)

        def failed(_):  # after every file was tried: those not marked, read by Pillow
            missing = tf.gather(order, tf.where(tf.equal(decoded.lookup(order), 0))[:, 0])
            with tf.control_dependencies([missing]):
                clear = decoded.remove(order)
            with tf.control_dependencies([clear]):
                images = self._with_pillow(missing)
            return tf.data.Dataset.from_tensor_slices((images, tf.gather(label_table, missing)))

        ds = tf.data.Dataset.range(tf.size(order, tf.int64)).map(
            _no_autograph(marked), deterministic=True, num_parallel_calls=tf.data.AUTOTUNE
        )
        return ds.ignore_errors().concatenate(tf.data.Dataset.range(1).flat_map(_no_autograph(failed)))
