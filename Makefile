# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint format install bench bench-fastai figures reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,export,serve]"
	touch $(STAMP)

# What only `make test` needs (and `make bench` in part; `make demo` needs none of it): the JAX and PyTorch
# backends (the backend matrix, bench_backends_predict), the OpenVINO export target, and huggingface_hub and
# keras-hub for the preset tests (tests/zoo/test_hub.py, test_presets.py).
TEST_EXTRAS_STAMP := $(VENV)/.installed-test-extras

$(TEST_EXTRAS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[jax,torch,openvino,hub,keras_hub]"
	touch $(TEST_EXTRAS_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnzoo demo

# ruff's format check and lint run first: unformatted or lint-failing code fails `make test` (and CI).
lint: $(STAMP)
	$(BIN)/ruff format --check cnnzoo tests benchmarks
	$(BIN)/ruff check cnnzoo tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format cnnzoo tests benchmarks
	$(BIN)/ruff check --fix cnnzoo tests benchmarks

test: lint $(TEST_EXTRAS_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=20

bench: $(STAMP) $(TEST_EXTRAS_STAMP)
	$(BIN)/python benchmarks/run_all.py

# cnnzoo against fastai (docs/benchmarks.md): torch (CPU build), fastai and timm live in their own
# venv, used only by benchmarks/fastai_side.py; `make test` and `make demo` never need it. The CPU
# build comes from TORCH_INDEX; where that index cannot be reached, PyPI's build (CUDA libraries
# included, ~4 GB; it runs on the CPU alike): `torch===` skips a local `+cpu` wheel that PyPI's
# torchvision cannot load with.
FASTAI_VENV := .venv-fastai
FASTAI_STAMP := $(FASTAI_VENV)/.installed
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(FASTAI_STAMP):
	$(PYTHON) -m venv $(FASTAI_VENV)
	-$(FASTAI_VENV)/bin/python -m pip install --quiet --retries 1 --index-url $(TORCH_INDEX) \
		torch==2.13.0 torchvision==0.28.0
	$(FASTAI_VENV)/bin/python -c "import torchvision" 2>/dev/null \
	|| $(FASTAI_VENV)/bin/python -m pip install --quiet "torch===2.13.0" torchvision==0.28.0
	$(FASTAI_VENV)/bin/python -m pip install --quiet fastai==2.8.12 timm==1.0.31
	touch $(FASTAI_STAMP)

bench-fastai: $(STAMP) $(FASTAI_STAMP)
	$(BIN)/python benchmarks/bench_fastai.py --fastai-python $(FASTAI_VENV)/bin/python

figures: $(STAMP)
	$(BIN)/python benchmarks/figures.py

reliability: $(STAMP)
	$(BIN)/python benchmarks/reliability.py

clean:
	rm -rf $(VENV) $(FASTAI_VENV) build *.egg-info
