"""Which model a fine-tuning run trains, and whether its backbone holds learned weights.

`resolve_model` turns `finetune`'s `model` (a zoo name, a saved
`.keras` file, a preset directory or `hf://` handle, or a `keras.Model`) into the model to train under the asked
precision policy, and says whether it is pretrained (see
`holds_learned_weights`).
"""

import logging
import os

from cnnzoo.data import pipeline as data_pipeline
from cnnzoo.data import sizing
from cnnzoo.errors import ConfigError
from cnnzoo.zoo.layers import pretrained_of
from cnnzoo.zoo.precision import with_dtype

__all__ = ["resolve_model", "given_model", "holds_learned_weights"]

log = logging.getLogger("cnnzoo.finetuning")


def resolve_model(model, data, input_shape, weights, pretrained, strategy, dtype=None):
    """The model `finetune` trains (under `dtype`), and whether its backbone is pretrained."""
    model, pretrained = given_model(model, data, input_shape, weights, pretrained, strategy, dtype)
    return with_dtype(model, dtype), pretrained  # the same model when it has that policy already


def given_model(model, data, input_shape, weights, pretrained, strategy, dtype):
    """`model` as a `keras.Model` (built, loaded or cloned into `strategy`'s scope) and `pretrained`."""
    import keras

    from cnnzoo.zoo import presets

    if presets.is_reference(model):  # a preset directory or hf:// handle: its model, trained further
        model = presets.load_preset(model, input_shape=input_shape, dtype=dtype, head_required=False, argument="model")
    elif isinstance(model, os.PathLike) or (isinstance(model, str) and model.endswith(".keras")):
        from cnnzoo.zoo.builders import load

        model = load(model)  # a saved zoo model: fine-tune it further (its optimizer tells if it trained)
    elif isinstance(model, str):
        from cnnzoo.zoo.builders import get

        shape = _input_shape(model, data, input_shape, weights)
        model = get(model, input_shape=shape, weights=weights, compile=False, dtype=dtype)
        return model, (weights is not None) if pretrained is None else bool(pretrained)
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"`model` must be a zoo model name, a saved .keras model or a keras.Model. Received: model={model!r}."
        )
    if input_shape is not None and tuple(input_shape) != tuple(model.inputs[0].shape[1:]):
        raise ConfigError(
            f"`input_shape` must match the given model's input {tuple(model.inputs[0].shape[1:])}, "
            f"or be left out. Received: input_shape={tuple(input_shape)!r}."
        )
    if weights is not None:
        raise ConfigError(
            f"`weights` applies to a model built by name; load weights into the model object "
            f"first. Received: weights={weights!r}."
        )
    if strategy is not None:  # variables must be created in the strategy's scope
        known = holds_learned_weights(model)
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        model = clone
        return model, known if pretrained is None else bool(pretrained)
    return model, holds_learned_weights(model) if pretrained is None else bool(pretrained)


def _input_shape(name, data, input_shape, weights):
    """The input a zoo entry is built at for `data`: fitted to the images (`cnnzoo.data.sizing`); a code entry
    (`@cnnzoo.register`) gets what the data fixes, else its own default (None)."""
    from cnnzoo.zoo import registry

    spec = registry.entry(name).spec
    if spec is None:
        return data_pipeline.input_shape_for(data, input_shape)
    return sizing.fitted_input_shape(data, spec, input_shape, weights)


def holds_learned_weights(model):
    """Whether a model object holds learned weights, as far as it says.

    Its head records it (`cnnzoo.zoo.layers.pretrained_of`: False for `cnnzoo.get`
    without weights, True with weights or after `finetune`); a model whose
    optimizer has taken steps since (trained with `fit`) has learned too. A model
    that says nothing (saved before cnnzoo recorded it) is taken as pretrained.
    """
    flag = pretrained_of(model)
    optimizer = getattr(model, "optimizer", None)
    stepped = optimizer is not None and int(optimizer.iterations.numpy()) > 0
    if flag is None:
        return True
    if not flag and stepped:
        log.info("%s was built without weights and has been trained since: fine-tuned as pretrained", model.name)
        return True
    return flag
