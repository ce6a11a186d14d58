"""Precision policies of zoo models: `dtype=` of `cnnzoo.get`, `finetune` and `tune`.

A policy is set on a model's own layers, never by changing Keras' global policy
behind the caller's back (`policy_scope` sets it only around code that takes no
`dtype`, and restores it). Under a mixed policy the weights stay float32, the
preprocessing runs in float32 and the softmax (`predictions` in `ClassifierHead`)
in float32; see docs/deploy.md, "Mixed precision and speed".
"""

import contextlib

import keras

from cnnzoo.errors import ConfigError
from cnnzoo.zoo.layers import ClassifierHead

__all__ = ["DTYPES", "AUTO", "check_dtype", "auto_dtype", "dtype_of", "with_dtype", "policy_scope"]

DTYPES = ("float32", "mixed_bfloat16", "mixed_float16")  # the precision policies `dtype=` accepts
AUTO = "auto"  # `dtype="auto"`: mixed_bfloat16 where the device has bf16 units, else float32 (`auto_dtype`)


def auto_dtype():
    """What `dtype="auto"` means on this machine: `"mixed_bfloat16"` where the device has bf16 units
    (a GPU of compute capability >= 8.0; with no GPU, a CPU with AVX512-BF16 or AMX), else `"float32"`
    (`cnnzoo.utils.devices.bf16_units`).

    Example:

    >>> auto_dtype()  # doctest: +SKIP
    'mixed_bfloat16'
    """
    from cnnzoo.utils.devices import bf16_units

    return "mixed_bfloat16" if bf16_units()[0] else "float32"


def check_dtype(dtype):
    """Validates a `dtype=` argument: the policy name, or None for Keras' own policy.

    Args:
        dtype: None, `"float32"`, `"mixed_bfloat16"` (bfloat16 compute, float32
            weights: CPUs with AVX512-BF16/AMX, TPUs, Ampere+ GPUs),
            `"mixed_float16"` (float16 compute, float32 weights, loss scaling:
            GPUs), or a `keras.DTypePolicy` of one of them; or `"auto"`:
            `"mixed_bfloat16"` where the device has bf16 units, else
            `"float32"` (`auto_dtype`).

    Returns:
        The policy name (`"auto"` resolved), or None.

    Example:

    >>> check_dtype(keras.DTypePolicy("mixed_bfloat16"))
    'mixed_bfloat16'
    """
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype == AUTO:
        return auto_dtype()
    name = dtype.name if isinstance(dtype, keras.DTypePolicy) else dtype
    if not isinstance(name, str) or name not in DTYPES:
        raise ConfigError(
            f"`dtype` must be None (float32), {', '.join(map(repr, DTYPES))}, 'auto' (mixed_bfloat16 where the "
            f"device has bf16 units) or a keras.DTypePolicy of one of them. Received: dtype={dtype!r}."
        )
    return name


def dtype_of(model):
    """The precision policy of a model: its `ClassifierHead`'s, else its first mixed layer's, else `"float32"`.

    Example:

    >>> dtype_of(cnnzoo.get("digits_cnn", dtype="mixed_bfloat16"))
    'mixed_bfloat16'
    """
    heads = [layer for layer in model.layers if isinstance(layer, ClassifierHead)]
    if heads:
        return heads[-1].dtype_policy.name
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if layer.dtype_policy.name in DTYPES[1:]:
            return layer.dtype_policy.name
        stack.extend(getattr(layer, "layers", []))
    return "float32"


def with_dtype(model, dtype):
    """`model` under another precision policy: the same model when it has it, else a rebuilt copy with its weights.

    Every layer on the model's policy moves to `dtype`; layers kept apart on
    purpose (the float32 preprocessing, a softmax kept in float32) stay as
    they are. Mixed policies keep float32 variables, so the weights move over
    exactly, both ways. The copy is uncompiled. ONNX Runtime has no bfloat16
    convolution on CPU: export `with_dtype(model, "float32")` of a mixed model.

    Example:

    >>> fast = with_dtype(cnnzoo.load("digits.keras"), "mixed_bfloat16")  # doctest: +SKIP
    """
    name = check_dtype(dtype)
    old = dtype_of(model)
    if name is None or name == old:
        return model
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # an optimizer for the old policy (loss scaling or not): compile anew
    _move_policies(config, old, name)
    clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
    clone.set_weights(model.get_weights())
    return clone


def _move_policies(node, old, new):
    if isinstance(node, list):
        for item in node:
            _move_policies(item, old, new)
    elif isinstance(node, dict):
        if node.get("registered_name") == "cnnzoo>Preprocess":
            return  # float32 preprocessing under every policy (see `cnnzoo.zoo.builders.build`)
        policy = node.get("dtype")
        if (
            isinstance(policy, dict)
            and policy.get("class_name") == "DTypePolicy"
            and policy.get("config", {}).get("name") == old
        ):
            node["dtype"] = {**policy, "config": {**policy["config"], "name": new}}
        for value in node.values():
            _move_policies(value, old, new)


@contextlib.contextmanager
def policy_scope(name):
    """Keras' global policy set to `name` for building code that takes no `dtype`; restored after."""
    if name is None:
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
