"""`cnnzoo.backend`: the implementation for the Keras backend in use, and a clear error where there is none."""

import pytest

from cnnzoo import backend
from cnnzoo.errors import BackendError, ConfigError
from conftest import on_backend


def test_dispatch_picks_the_running_backend():
    assert backend.name() == "tensorflow"  # the suite's own process (conftest)
    assert backend.dispatch("x", tensorflow=lambda: "tf", jax=lambda: "jax")() == "tf"


def test_a_missing_implementation_names_the_backends_that_have_one(monkeypatch):
    monkeypatch.setattr(backend, "name", lambda: "torch")
    with pytest.raises(BackendError, match=r"Grad-CAM is not available on the Keras backend 'torch'; it runs on jax, "):
        backend.dispatch("Grad-CAM", tensorflow=print, jax=print)
    assert issubclass(BackendError, ConfigError) and issubclass(BackendError, ValueError)


@pytest.mark.backends
def test_each_backend_dispatches_to_its_own(other_backend):
    got = on_backend(
        other_backend,
        """
        import json
        from cnnzoo import backend
        picked = backend.dispatch("x", tensorflow=lambda: "tensorflow", jax=lambda: "jax", torch=lambda: "torch")
        print(json.dumps(picked()))
        """,
    )
    assert got == other_backend
