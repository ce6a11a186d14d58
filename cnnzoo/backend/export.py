"""Where `cnnzoo.export` runs its converters, per Keras backend.

The converters cnnzoo verifies (tf2onnx for ONNX, the TFLite converter for
LiteRT, `tf.saved_model` for SavedModel, OpenVINO's TensorFlow reader) read
TensorFlow graphs. On TensorFlow they run in this process. On JAX and
PyTorch the same weights are rebuilt under the TensorFlow backend in a child
process and exported there, so every backend gets the same, verified file:
Keras's own JAX route writes ONNX through `jax2onnx`, whose MaxPool ONNX
Runtime rejects ("Unsupported pooling size", found with Keras 3.15 and
jax2onnx 0.x, issue 16), and LiteRT/SavedModel have no JAX or PyTorch route.
"""

from cnnzoo.backend import dispatch

__all__ = ["converters_in_process"]


def converters_in_process():
    """True where this process's Keras backend can run the export converters (TensorFlow)."""
    return dispatch("export", tensorflow=lambda: True, jax=lambda: False, torch=lambda: False)()
