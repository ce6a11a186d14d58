"""Builders: a `ModelSpec` becomes a `keras.Model`.

`get(name, ...)` is the public entry: it looks the name up in the registry,
applies validated overrides, builds a Functional model with explicit layer
names and compiles it with the spec's defaults (`compile_model`, the one
compile recipe). Loading saved models and weights files is
`cnnzoo.zoo.loading`.
"""

import math
from pathlib import Path

import keras

from cnnzoo.errors import ConfigError
from cnnzoo.zoo import config, presets, registry, stats
from cnnzoo.zoo.config_tables import Train
from cnnzoo.zoo.features import features_model
from cnnzoo.zoo.heads import check_head_options, embedding_model
from cnnzoo.zoo.layers import ClassifierHead, ConvBlock, Preprocess, expose_class_names
from cnnzoo.zoo.loading import load, load_named_weights, load_weights_into
from cnnzoo.zoo.precision import DTYPES, check_dtype, dtype_of, policy_scope, with_dtype
from cnnzoo.zoo.residual import stages_model

__all__ = [
    "get",
    "build",
    "load",  # defined in cnnzoo.zoo.loading, and importable from here too (cnnzoo.finetuning imports it so)
    "compile_model",
    "make_optimizer",
    "model_flops",
    "backbone_model",
    "check_dtype",
    "dtype_of",
    "with_dtype",
    "DTYPES",
]

_OPTIMIZERS = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "nadam": "Nadam",
}


def backbone_model(spec, input_shape=None):
    """Builds the `keras.applications` feature extractor of a backbone spec (no weights).

    Args:
        spec: a `ModelSpec` with a `backbone` table.
        input_shape: optional (height, width, channels).

    Returns:
        A Functional `keras.Model` named `backbone` (include_top=False, weights=None).

    Example:

    >>> backbone_model(cnnzoo.spec("efficientnetb0_classifier")).output.shape
    (None, 7, 7, 1280)
    """
    app = getattr(keras.applications, spec.backbone.application, None)
    if app is None:
        raise ConfigError(
            f"`backbone.application` must name a keras.applications model "
            f"(in {spec.source}). Received: application={spec.backbone.application!r}."
        )
    try:
        base = app(
            include_top=False, weights=None, input_shape=tuple(input_shape or spec.input_shape), **spec.backbone.kwargs
        )
    except ValueError as e:
        raise ConfigError(
            f"`input_shape` does not suit the {spec.backbone.application} backbone of "
            f"`{spec.name}`: {e} Received: input_shape={tuple(input_shape or spec.input_shape)}."
        ) from e
    base.name = "backbone"
    return base


def build(spec, weights=None, dtype=None):
    """Builds the model a validated spec describes.

    Args:
        spec: a `ModelSpec` (apply overrides first with `spec.replace(...)`).
        weights: None, or a path to a `.weights.h5` or `.keras` file whose
            weights have this model's shapes. Named weights (`"imagenet"`,
            `"digits"`) are resolved by `cnnzoo.get`.
        dtype: None (Keras' policy, float32 unless you changed it), `"float32"`,
            `"mixed_bfloat16"` or `"mixed_float16"`: the precision policy of this
            model's layers (see `check_dtype`).

    Returns:
        An uncompiled Functional `keras.Model` named after the spec, with
        layers `preprocess`, `block1`... (or `backbone`), `stages` (a nested
        model of the residual stages, where the spec has them) and `head`; the head
        records whether the model holds learned weights (`pretrained`).

    Example:

    >>> model = build(cnnzoo.spec("lenet5"))
    >>> model.count_params()
    61706
    """
    stats.layer_stats(spec)  # clear error when the input is too small, before any TF work
    policy = check_dtype(dtype)
    inputs = keras.Input(shape=spec.input_shape, name="image")
    # preprocessing stays float32 (exact pixel arithmetic); the first conv casts its output
    x = Preprocess(spec.preprocessing, name="preprocess", dtype="float32" if policy else None)(inputs)
    if spec.backbone is not None:
        with policy_scope(policy):  # keras.applications models take no `dtype`
            x = backbone_model(spec)(x)
    for i, b in enumerate(spec.blocks, 1):
        x = ConvBlock(
            list(b.filters),
            kernel_size=b.kernel_size,
            strides=b.strides,
            padding=b.padding,
            activation=b.activation,
            batch_norm=b.batch_norm,
            bn_momentum=b.bn_momentum,
            pool=b.pool,
            pool_size=b.pool_size,
            pool_strides=b.pool_strides,
            pool_padding=b.pool_padding,
            dropout=b.dropout,
            name=f"block{i}",
            dtype=policy,
        )(x)
    if spec.stages:
        x = stages_model(spec, tuple(x.shape[1:]), policy)(x)
    h = spec.head
    outputs = ClassifierHead(
        spec.num_classes,
        dense=list(h.dense),
        dropout=h.dropout,
        activation=h.activation,
        pooling=h.pooling,
        class_names=list(spec.class_names) or None,
        pretrained=weights is not None,
        name="head",
        dtype=policy,
    )(x)
    model = keras.Model(inputs, outputs, name=spec.name)
    if weights is not None:
        load_weights_into(model, weights)
    return expose_class_names(model)  # `model.class_names`


def make_optimizer(name="adam", learning_rate=1e-3, **options):
    """A Keras optimizer by zoo name (`"adam"`, `"adamw"`, `"sgd"`, `"rmsprop"`, `"nadam"`).

    Args:
        name: str, one of `cnnzoo.zoo.config_tables.OPTIMIZERS`.
        learning_rate: float or a `keras.optimizers.schedules.LearningRateSchedule`.
        **options: more optimizer arguments, e.g. `use_ema=True, ema_momentum=0.99`.

    Returns:
        A `keras.optimizers.Optimizer`.

    Example:

    >>> make_optimizer("sgd", 0.01).learning_rate  # doctest: +SKIP
    """
    if name not in _OPTIMIZERS:
        raise ConfigError(
            f"`optimizer` must be one of {', '.join(map(repr, _OPTIMIZERS))}. Received: optimizer={name!r}."
        )
    return getattr(keras.optimizers, _OPTIMIZERS[name])(learning_rate=learning_rate, **options)


def compile_model(
    model,
    train=None,
    *,
    optimizer=None,
    learning_rate=None,
    jit_compile="auto",
    steps_per_execution=1,
    loss=None,
    metrics=None,
    ema_momentum=None,
):
    """Compiles `model` the zoo's way: sparse categorical cross-entropy and accuracy.

    The one compile recipe: `cnnzoo.get`, fine-tuning stages, search trials and
    the shipped-weights script all compile through it, so every model reports
    the same metrics (`loss`, `accuracy`, `val_loss`, `val_accuracy`). Accuracy
    is compiled as a weighted metric: a `sample_weight` counts in it as in the
    loss (an image weighted 0 counts for nothing; fine-tuning on JAX under
    `keras.distribution.DataParallel` fills up its last validation batch so).

    Args:
        model: a `keras.Model`.
        train: a `Train` (optimizer, learning_rate); default `Train()`.
        optimizer: optional optimizer name replacing `train.optimizer`.
        learning_rate: optional float or schedule replacing `train.learning_rate`.
        jit_compile: passed to `model.compile` (`"auto"`: Keras decides; XLA is
            off on CPU, see docs/benchmarks.md).
        steps_per_execution: int, batches per compiled call (per-batch
            callbacks then run every that many batches); `cnnzoo.finetune`
            picks it (docs/deploy.md, "Mixed precision and speed").
        loss, metrics: optional replacements of the loss and metrics (fine-tuning
            with label smoothing or MixUp passes a cross-entropy that also takes
            label distributions, and an `accuracy` metric for both forms).
        ema_momentum: optional float in (0, 1): the optimizer keeps an
            exponential moving average of the weights (`use_ema=True`).

    A `mixed_float16` model's optimizer is wrapped in a
    `keras.optimizers.LossScaleOptimizer` here: Keras does that only for a model
    whose own policy is mixed_float16, and a zoo model sets it per layer.

    Returns:
        The same model, compiled.

    Example:

    >>> compile_model(cnnzoo.get("lenet5", compile=False))  # doctest: +SKIP
    """
    train = train or Train()
    rate = train.learning_rate if learning_rate is None else learning_rate
    ema = {} if ema_momentum is None else {"use_ema": True, "ema_momentum": float(ema_momentum)}
    opt = make_optimizer(optimizer or train.optimizer, rate, **ema)
    if dtype_of(model) == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    model.compile(
        optimizer=opt,
        loss=loss or "sparse_categorical_crossentropy",
        weighted_metrics=metrics or ["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def get(
    name,
    num_classes=None,
    input_shape=None,
    weights=None,
    compile=True,
    dtype=None,
    features_only=False,
    out_indices=None,
    **overrides,
):
    """Builds a zoo model by name.

    Args:
        name: a registered model name (see `cnnzoo.list_models()`), or a preset: a directory
            `cnnzoo.save_preset` or keras-hub's `save_to_preset` wrote (an image classifier or
            backbone; the `keras_hub` extra), or an `hf://owner/repo[@revision]` handle of a
            Hugging Face Hub repository holding one (the `hub` extra). A preset loads with its
            weights; see docs/data_and_weights.md, "Presets".
        num_classes: int, size of the softmax; default the entry's. 0: no
            classifier, the pooled features (`(None, channels)` embeddings;
            `cnnzoo.zoo.heads.embedding_model`).
        input_shape: (height, width, channels); default the entry's.
        weights: None (random init), a path to a `.weights.h5`/`.keras` file,
            or a registered weights name (`"imagenet"` for backbone entries).
        compile: bool; compile with Adam, sparse categorical cross-entropy and
            accuracy (the entry's `[train]` settings), so `fit` works at once.
        dtype: None (float32), `"mixed_bfloat16"` or `"mixed_float16"`: the
            precision policy, set on this model's layers (Keras' global policy
            is left alone); the softmax stays float32 and weights float32.
        features_only: bool; return the feature maps instead of the classifier:
            a model whose outputs are the maps at the levels `out_indices`, with
            `model.feature_info` (`cnnzoo.zoo.features.features_model`).
        out_indices: with `features_only`, None (every level) or the levels to
            output: level i is the map at stride 2**(i+1), so `(1, 2, 3, 4)` is
            strides 4 to 32 (a feature pyramid's C2..C5).
        **overrides: validated changes to the config, e.g. `dropout=0.3`,
            `dense=[128]`, `batch_norm=True`, `class_names=[...]`,
            `blocks=[{"filters": 32}, ...]`.

    Returns:
        A Functional `keras.Model`. A features model and an embedding model
        (`num_classes=0`) are not compiled, whatever `compile` says: they have
        no labels to compute a loss against; compile them with your own.

    Example:

    >>> model = cnnzoo.get("bird_classifier", num_classes=12, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 12)
    >>> pyramid = cnnzoo.get("bird_classifier", features_only=True, out_indices=(1, 2, 3, 4))
    >>> pyramid.feature_info.reduction()
    [4, 8, 16, 32]
    """
    head = check_head_options(num_classes, features_only, out_indices)
    if head is not None:  # the classifier first (the entry's head), then its features or embeddings
        model = get(name, None, input_shape, weights, False, dtype, **overrides)
        return features_model(model, out_indices) if head == "features" else embedding_model(model)
    if presets.is_reference(name):
        return _from_preset(name, num_classes, input_shape, weights, compile, dtype, overrides)
    e = registry.entry(name)
    policy = check_dtype(dtype)
    if e.builder is not None:
        given = {"num_classes": num_classes, "input_shape": input_shape, "weights": weights}
        # only what the caller gave: a builder's own defaults (`input_shape=(32, 32, 3)`) must apply
        with policy_scope(policy):  # a builder's code takes no `dtype`: Keras' policy while it runs
            model = e.builder(**{k: v for k, v in given.items() if v is not None}, **overrides)
        if not isinstance(model, keras.Model):
            raise ConfigError(
                f"The builder of `{name}` ({e.source}) must return a keras.Model. Received: {type(model).__name__}."
            )
        if compile and not model.compiled:
            compile_model(model)
        return model
    changes = dict(overrides)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if input_shape is not None:
        changes["input_shape"] = input_shape
    spec = config.apply_overrides(e.spec, changes)
    if isinstance(weights, (str, Path)) and not _looks_like_path(weights):
        model = build(spec, dtype=policy)
        load_named_weights(model, spec, str(weights))
        model.get_layer("head").pretrained = True
    else:
        model = build(spec, weights=weights, dtype=policy)
    if compile:
        compile_model(model, spec.train)
    return model


def _from_preset(name, num_classes, input_shape, weights, compile, dtype, overrides):
    """`get` for a preset directory or `hf://` handle: the preset's model, compiled the zoo's way."""
    if weights is not None or overrides:
        given = {**({"weights": weights} if weights is not None else {}), **overrides}
        raise ConfigError(
            f"A preset comes with its architecture and weights: `weights` and config overrides apply to zoo names "
            f"only (fine-tune the preset to change it). Received: name={str(name)!r} with "
            f"{', '.join(f'{k}={v!r}' for k, v in given.items())}."
        )
    model = expose_class_names(presets.load_preset(name, num_classes=num_classes, input_shape=input_shape, dtype=dtype))
    if compile:
        compile_model(model)
    return model


def _looks_like_path(value):
    s = str(value)
    return s.endswith((".h5", ".keras")) or "/" in s or "\\" in s or Path(s).exists()


def model_flops(model):
    """Forward FLOPs per image of a built Keras model (2 per multiply-accumulate).

    Counts Conv2D, DepthwiseConv2D, SeparableConv2D and Dense layers, nested
    models included; the same convention as `cnnzoo.zoo.stats`.

    Example:

    >>> model_flops(cnnzoo.get("lenet5")) == cnnzoo.info("lenet5").flops
    True
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += model_flops(layer)
        elif isinstance(layer, (ConvBlock, ClassifierHead)):  # propagate shapes through sub-layers
            shape = tuple(layer.input.shape)
            for step in layer.steps:
                out = tuple(step.compute_output_shape(shape))
                total += _layer_flops(step, shape, out)
                shape = out
        elif isinstance(layer, _COUNTED):
            total += _layer_flops(layer, tuple(layer.input.shape), tuple(layer.output.shape))
    return total


# in Keras 3 the depthwise and separable convolutions are no Conv2D subclasses
_COUNTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense)


def _layer_flops(layer, in_shape, out):
    cin = in_shape[-1]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2 * math.prod(layer.kernel_size) * out[1] * out[2] * out[3]
    if isinstance(layer, keras.layers.SeparableConv2D):
        k = math.prod(layer.kernel_size)
        return 2 * out[1] * out[2] * (k * cin * layer.depth_multiplier + cin * layer.depth_multiplier * out[3])
    if isinstance(layer, keras.layers.Conv2D):
        return 2 * math.prod(layer.kernel_size) * (cin // layer.groups) * out[3] * out[1] * out[2]
    if isinstance(layer, keras.layers.Dense):  # ConvNeXt's pointwise layers are Dense on every position
        return 2 * cin * layer.units * math.prod(out[1:-1])
    return 0
