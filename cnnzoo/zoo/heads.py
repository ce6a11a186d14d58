"""Heads: pooled embeddings (`num_classes=0`) and a new classifier on a model (timm's `reset_classifier`).

A zoo model ends in one `ClassifierHead` (pooling, hidden dense layers, dropout, softmax). Every
change of head here keeps the layers below it, and their weights, and puts a new head on the map
the old one read:

- `embedding_model(model)`: a head with no classes, `ClassifierHead(0)`: global average pooling
  of the last feature map (global max pooling where the head pooled so), no dense layer; the
  output is `(None, channels)`, float32 under a mixed policy. It keeps the old head's
  `pretrained` flag, so `cnnzoo.finetune` still knows whether the layers below hold learned weights.
- `reset_classifier(model, num_classes)`: a new `ClassifierHead` with the old one's
  configuration (pooling, hidden layers, dropout), freshly initialised, ending in a softmax of
  `num_classes` (0: the embeddings). The hidden dense layers belong to the head and start fresh
  too (timm keeps its `pre_logits`; a cnnzoo head is one layer).

A model that does not end in a `ClassifierHead` (a registered builder's, a plain
keras.applications model) gets its new head on its deepest feature map (`cnnzoo.zoo.features`).
`cnnzoo.finetuning.freezing.replace_head` replaces heads through `with_new_head` too.
"""

import keras

from cnnzoo.errors import ConfigError
from cnnzoo.utils.checks import check_int
from cnnzoo.zoo import features
from cnnzoo.zoo.layers import ClassifierHead, expose_class_names
from cnnzoo.zoo.precision import dtype_of

__all__ = ["embedding_model", "reset_classifier", "with_new_head", "check_head_options"]


def _body(model):
    """`(inputs, tensor, old_head)`: the map the head reads (the deepest level without a head)."""
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise ConfigError(
            f"`model` must be a Functional keras.Model (a zoo model from `cnnzoo.get`). "
            f"Received: model={getattr(model, 'name', model)!r} ({type(model).__name__})."
        )
    head = model.layers[-1]
    if isinstance(head, ClassifierHead):
        return model.inputs, head.input, head
    outputs = model.outputs
    if len(outputs) > 1 or len(outputs[0].shape) == 4:
        raise ConfigError(
            f"`model` must be a classifier or an embedding model; `{model.name}` outputs feature maps "
            f"(a features model). Build the classifier with `cnnzoo.get(name)` instead, or put your own "
            f"layers on these maps. Received: model={model.name!r} with outputs "
            f"{[tuple(t.shape) for t in outputs]}."
        )
    inputs, tensor = features.deepest(model)
    return inputs, tensor, None


def with_new_head(model, num_classes, class_names=None):
    """`model` with a new, freshly initialised `ClassifierHead` of `num_classes` (uncompiled).

    The new head has the old one's configuration (pooling, hidden layers, dropout, activation,
    precision, `pretrained` flag) and is called on the map the old head read, so the returned
    Functional model shares every other layer (and weight) with `model`. With `num_classes=0`
    it is the embedding head: the pooling alone (average where the old head flattened).

    Args:
        model: a Functional `keras.Model`, usually ending in a `ClassifierHead`.
        num_classes: int >= 0.
        class_names: optional list of `num_classes` labels.

    Returns:
        A Functional `keras.Model` named like `model`, not compiled.

    Example:

    >>> with_new_head(cnnzoo.get("lenet5"), 3).output_shape
    (None, 3)
    """
    num_classes = check_int(num_classes, "num_classes", lo=0)
    inputs, x, old = _body(model)
    names = list(class_names) if class_names else None
    if names and len(names) != num_classes:
        raise ConfigError(
            f"`class_names` must have `num_classes` ({num_classes}) entries. Received: class_names={names!r}."
        )
    config = {"pooling": "avg", "pretrained": None, "name": "head", "dtype": dtype_of(model)}
    if old is not None:  # the old head's configuration and precision policy
        config = {k: getattr(old, k) for k in ("dense", "dropout", "activation", "pooling", "pretrained", "name")}
        config["dtype"] = old.dtype_policy
    if num_classes == 0:  # embeddings: the pooling alone
        config = {**config, "dense": (), "dropout": 0.0}
        config["pooling"] = config["pooling"] if config["pooling"] in ("avg", "max") else "avg"
    head = ClassifierHead(num_classes, class_names=names, **config)
    return expose_class_names(keras.Model(inputs, head(x), name=model.name))  # `model.class_names`


def embedding_model(model):
    """`model` up to its pooled features: `(None, channels)` embeddings, no dense layer.

    What `cnnzoo.get(name, num_classes=0)` returns (timm's `num_classes=0`).

    Args:
        model: a zoo model (or any Functional model: its deepest feature map is pooled).

    Returns:
        A Functional `keras.Model` sharing the layers and weights of `model`, ending in
        `ClassifierHead(0)` (global average pooling, or global max pooling where the head pooled
        so); not compiled: there is no loss to choose for embeddings.

    Example:

    >>> embedding_model(cnnzoo.get("vgg16", input_shape=(32, 32, 3))).output_shape
    (None, 512)
    """
    return with_new_head(model, 0)


def reset_classifier(model, num_classes, class_names=None):
    """Replaces the classifier of `model`: the same layers below the head, a fresh head of `num_classes`.

    timm's `reset_classifier`, the Keras way: a new Functional model is returned (a Keras model's
    graph cannot be changed in place) that shares every layer below the head with `model`,
    weights included; the new `ClassifierHead` has the old one's pooling, hidden layers and
    dropout, freshly initialised, and a softmax of `num_classes`. `num_classes=0` gives the
    pooled embeddings (as `cnnzoo.get(name, num_classes=0)`). A model that does not end in a
    `ClassifierHead` gets a global-average-pooling head on its deepest feature map.

    Args:
        model: a zoo model (from `cnnzoo.get`, `cnnzoo.load`, `cnnzoo.finetune`), an embedding
            model, or any Functional model whose last feature map is to be classified.
        num_classes: int >= 0.
        class_names: optional list of `num_classes` labels, kept in the head (and saved with it).

    Returns:
        The new `keras.Model`. When `model` was compiled (as `cnnzoo.get` compiles), the new one is
        compiled the same way (its optimizer settings, loss and metrics; a fresh optimizer state),
        so `fit` works at once; an embedding model is not compiled.

    Example:

    >>> model = cnnzoo.get("tiny_vgg")
    >>> birds = cnnzoo.reset_classifier(model, 3, class_names=["heron", "owl", "robin"])
    >>> birds.output_shape
    (None, 3)
    """
    new = with_new_head(model, num_classes, class_names)
    if num_classes and getattr(model, "compiled", False):
        new.compile_from_config(model.get_compile_config())
    return new


def check_head_options(num_classes, features_only, out_indices):
    """What `cnnzoo.get` is asked for: `"features"`, `"embeddings"` or None (a classifier).

    Checks the combination of its `num_classes`, `features_only` and `out_indices`
    (`out_indices` alone, or a class count with `features_only`, is a `ConfigError`).

    Example:

    >>> check_head_options(0, False, None)
    'embeddings'
    """
    if not isinstance(features_only, bool):
        raise ConfigError(f"`features_only` must be True or False. Received: features_only={features_only!r}.")
    if out_indices is not None and not features_only:
        raise ConfigError(
            f"`out_indices` selects feature maps: it needs `features_only=True`. Received: "
            f"out_indices={out_indices!r}, features_only=False. Use get(name, features_only=True, "
            f"out_indices={out_indices!r})."
        )
    if features_only:
        if num_classes:
            raise ConfigError(
                f"`num_classes` has no effect with `features_only=True`: a features model has no classifier. "
                f"Received: num_classes={num_classes!r}. Leave it out, or drop `features_only` and pass num_classes=0 "
                f"for pooled embeddings."
            )
        return "features"
    if num_classes is not None and check_int(num_classes, "num_classes", lo=0) == 0:
        return "embeddings"
    return None
