# `make model`: rebuild the int8 scene classifier in models/ (included by the top-level Makefile).
# TensorFlow lives only in its own venv; the device venv never needs it.

TRAIN_VENV := .venv-train
TRAIN_PY   := $(TRAIN_VENV)/bin/python

$(TRAIN_VENV)/.stamp-train: pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_PY) -m pip install -q --upgrade pip
	$(TRAIN_PY) -m pip install -q -e '.[train]'
	@touch $@

# Generated frames are cached in build/model/ under a hash of the generator code, so a
# re-run after a code change regenerates them and an unchanged re-run only retrains.
model: $(TRAIN_VENV)/.stamp-train
	$(TRAIN_PY) -m synthseal.firmware_tools.model.build
