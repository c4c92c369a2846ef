# Murmur: learn an artist's sound on the laptop, play it forever on a Raspberry Pi.
# Bare `make` prints the menu. Every target sets up the environment it uses (and only that one) and reuses it:
# .venv/device (numpy, the TFLite runtime, PyAudio: render, play, deploy …) or .venv/trainer (TensorFlow too;
# train and demo also set up .venv/tflite-runtime, in which the exporter proves the legacy runtime loads the model).

SHELL := /bin/bash
PYTHON ?= python3
VENV_T := .venv/trainer
VENV_D := .venv/device
VENV_R := .venv/tflite-runtime
PY_T := $(VENV_T)/bin/python
PY_D := $(VENV_D)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE = 1

# Interface variables (other work and outside checks rely on these names).
DATA ?= trainer/demo
OUT ?=
BUNDLE ?= out/demo/bundle
SECONDS ?= 60
SET ?=
SEED ?=
MINUTES ?= 3
IN ?=
PI ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo train render play resynth studio test test-fast bench lint clean

help: ## this menu
	@echo "Murmur — make targets:"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "Variables: DATA= OUT= MINUTES= BUNDLE= SECONDS= SET=\"name=value …\" SEED= IN= PI=\"host …\" ARGS=\"extra CLI options\""

$(VENV_T)/.installed: requirements/trainer.txt requirements/device.txt requirements/studio.txt requirements/dev.txt scripts/setup-apt.sh
	bash scripts/setup-apt.sh
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV_T)
	$(VENV_T)/bin/pip install -q --disable-pip-version-check -r requirements/trainer.txt -r requirements/studio.txt -r requirements/dev.txt
	touch $@

$(VENV_D)/.installed: requirements/device.txt requirements/dev.txt scripts/setup-apt.sh
	bash scripts/setup-apt.sh
	$(PYTHON) -m venv $(VENV_D)
	$(VENV_D)/bin/pip install -q --disable-pip-version-check -r requirements/device.txt -r requirements/dev.txt
	touch $@

$(VENV_R)/.installed: requirements/tflite-runtime.txt
	$(PYTHON) -m venv $(VENV_R)
	$(VENV_R)/bin/pip install -q --disable-pip-version-check -r requirements/tflite-runtime.txt
	touch $@

setup: $(VENV_T)/.installed $(VENV_D)/.installed $(VENV_R)/.installed ## create .venv/trainer, .venv/device, .venv/tflite-runtime (apt packages too)

demo: $(VENV_T)/.installed $(VENV_R)/.installed ## train on the bundled clip, render a preview WAV + picture, print where they are
	$(PY_T) -m murmur.trainer demo --out out/demo $(ARGS)

train: $(VENV_T)/.installed $(VENV_R)/.installed ## make train DATA=<file|folder> OUT=<bundle dir> [MINUTES=3] [ARGS=...]
	@[ -n "$(OUT)" ] || { echo "make train: set OUT=<bundle dir>, e.g. make train DATA=my_sounds/ OUT=bundles/mine"; exit 2; }
	$(PY_T) -m murmur.trainer train "$(DATA)" --out "$(OUT)" --minutes $(MINUTES) $(ARGS)

render: $(VENV_D)/.installed ## make render BUNDLE=<dir> SECONDS=<n> OUT=<file.wav> [SET="temperature=0.5 …"] [SEED=n]
	@[ -n "$(OUT)" ] || { echo "make render: set OUT=<file.wav>"; exit 2; }
	$(PY_D) -m murmur.device render --bundle "$(BUNDLE)" --seconds $(SECONDS) --out "$(OUT)" --set "$(SET)" $(if $(SEED),--seed $(SEED)) $(ARGS)

play: $(VENV_D)/.installed ## make play BUNDLE=<dir> [ARGS="--device NAME"] — live on this computer's sound card
	$(PY_D) -m murmur.device play --bundle "$(BUNDLE)" --set "$(SET)" $(if $(SEED),--seed $(SEED)) $(ARGS)

studio: $(VENV_T)/.installed $(VENV_R)/.installed ## the studio in the browser: recordings, train, listen with knobs, compare, deploy (ARGS="--port N --no-browser --project DIR")
	$(PY_T) -m murmur.studio $(ARGS)

resynth: $(VENV_T)/.installed ## make resynth IN=<audio> OUT=<file.wav> — STFT magnitudes through the vocoder alone
	@[ -n "$(IN)" ] && [ -n "$(OUT)" ] || { echo "make resynth: set IN=<audio file> OUT=<file.wav>"; exit 2; }
	$(PY_T) -m murmur.device resynth "$(IN)" --out "$(OUT)" $(ARGS)

test: setup ## run the test suite
	$(PY_T) -m pytest $(ARGS)

test-fast: setup ## the suite without the tests marked slow (training, deploys over ssh): the inner loop
	$(PY_T) -m pytest -m "not slow" $(ARGS)

bench: setup ## measure the targets and write BENCHMARKS.md
	$(PY_T) -m benchmarks $(ARGS)

.PHONY: deploy rollback logs test-arm64
DEPLOY_BUNDLE = $(if $(filter command line environment,$(origin BUNDLE)),--bundle-override "$(BUNDLE)",--bundle "$(BUNDLE)")
DEPLOY_CONFIG = $(if $(CONFIG),--config-override "$(CONFIG)",)
deploy: $(VENV_D)/.installed ## make deploy PI="host1 host2 …" [BUNDLE=<dir>] [CONFIG=<murmur.toml>] — install if needed, verify, switch, health gate, auto-rollback
	@[ -n "$(PI)" ] || { echo "make deploy: set PI=\"host1 host2 …\" (ssh names, inventory names, @group or all; see deploy/README.md)"; exit 2; }
	$(PY_D) -m murmur.deploy deploy $(PI) $(DEPLOY_BUNDLE) $(DEPLOY_CONFIG) $(ARGS)

rollback: $(VENV_D)/.installed ## make rollback PI="host …" — back to the previous healthy release (ARGS="--to <release id>")
	@[ -n "$(PI)" ] || { echo "make rollback: set PI=\"host …\""; exit 2; }
	$(PY_D) -m murmur.deploy rollback $(PI) $(ARGS)

logs: $(VENV_D)/.installed ## make logs PI="host …" [ARGS="--follow"] — the service's journal on each Pi
	@[ -n "$(PI)" ] || { echo "make logs: set PI=\"host …\""; exit 2; }
	$(PY_D) -m murmur.deploy logs $(PI) $(ARGS)

test-arm64: setup ## the device side on arm64 Bookworm under qemu-user (root; builds a cached root in out/arm64)
	bash tests/arm64/run.sh

.PHONY: test-system
test-system: setup ## the appliance booted: a Debian 12 guest under QEMU, make deploy/status, sound, GPIO, reboot, late card (root; cached in /var/cache/murmur-test-system)
	bash tests/system/run.sh

.PHONY: status
status: $(VENV_D)/.installed ## make status PI="host …" — each Pi's health report (playing, level, bundle, clock, power) + a summary line
	@[ -n "$(PI)" ] || { echo "make status: set PI=\"host …\" (ssh names, inventory names, @group or all), e.g. make status PI=murmur.local"; exit 2; }
	$(PY_D) -m murmur.deploy status $(PI) $(ARGS)

lint: $(VENV_T)/.installed ## ruff over the code, mypy over device/ and trainer/ (settings in pyproject.toml)
	$(VENV_T)/bin/ruff check device trainer deploy studio murmur tests benchmarks
	$(VENV_T)/bin/mypy

clean: ## remove renders and caches (keeps the venvs)
	rm -rf out .pytest_cache .ruff_cache
