"""Image data: files, folders, the built-in digits, augmentation, and `prepare`.

- `images`: one image file -> pixels (`check_image`, `load_image`, `convert_image`, resizing);
- `folders`: `image_folder`, `<path>/<class>/<image>` -> tf.data pipelines;
- `folder_files`: an image folder's files listed and checked (headers, Pillow);
- `folder_dataset`: an image folder's tf.data pipeline (decoded, cached, shuffled, batched);
- `decoding`: headers checked cheaply, TensorFlow decoding in parallel, files that fail reported;
- `memory`: the decoded-image cache budget and cache mode (`plan_cache`), and each worker's shard of the files;
- `mixing`: MixUp and CutMix on one-hot batches;
- `datasets`: the built-in UCI digits (`digits`, `digits_folder`);
- `augment`: `default_augmentation`, `augment="auto"` and what `augment=` may be;
- `options`: `DataOptions`, the batch size, validation split and augmentation every workflow
  shares (their defaults are written there only);
- `split`: the one stratified, seeded train/validation split;
- `arrays`: image arrays checked, split, fitted to a model's input and fed by index;
- `pipeline`: `prepare`, the one path from any accepted `data` to the
  train/validation pipelines that `cnnzoo.finetune` and `cnnzoo.tune` train on,
  `input_shape_for` (the model input for some data) and `settle_classes`;
- `inputs`: `Inputs`, what `prepare` returns, built from a folder, arrays or datasets;
- `sizing`: `fitted_input_shape`, the input a zoo entry is built at for some data when none is
  given (the images' median side, within what the architecture accepts).

Importing this package never imports TensorFlow.
"""

from cnnzoo.data.augment import augmentation_layers, default_augmentation
from cnnzoo.data.datasets import DIGIT_CLASSES, Arrays, digits, digits_folder, resize_images
from cnnzoo.data.folders import DEFAULT_IMAGE_SIZE, ImageFolder, image_folder
from cnnzoo.data.images import IMAGE_EXTENSIONS, check_image, convert_image, load_image, resize_array, to_channels
from cnnzoo.data.inputs import Inputs
from cnnzoo.data.options import DataOptions
from cnnzoo.data.pipeline import input_shape_for, prepare, settle_classes
from cnnzoo.data.split import stratified_split

__all__ = [
    "Arrays",
    "DataOptions",
    "ImageFolder",
    "Inputs",
    "digits",
    "digits_folder",
    "image_folder",
    "prepare",
    "input_shape_for",
    "settle_classes",
    "check_image",
    "load_image",
    "convert_image",
    "resize_array",
    "to_channels",
    "resize_images",
    "default_augmentation",
    "augmentation_layers",
    "stratified_split",
    "IMAGE_EXTENSIONS",
    "DEFAULT_IMAGE_SIZE",
    "DIGIT_CLASSES",
]
