# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
# `make lint` (ruff: pyproject.toml's [tool.ruff]) is run by .ci/run before the tests.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint clean onboard demo-base base-data

# With uv (tools/install.py: pip's sources, a third of pip's time), with pip alone where uv fails
$(VENV)/.installed: pyproject.toml tools/install.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) tools/install.py || $(PY) -m pip install -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m edn.cli demo

# Two pytest processes, each with its own Ray cluster and MLflow server, a test file at a time:
# much of a test's time is processes starting and waiting (docs/testing.md)
test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile

# The base-model experiment (docs/base-model.md): 24 dancers for a base (base-data's 12, and 12 more
# of 240 frames, numbered from 100) and 3 held out of it; the base (edn-onboard-base: L1 at 4x
# cpu_small's, bf16 where the CPU computes it natively; the best zero-shot base measured) and its face
# GAN, which lays each video's reference face over the body's (face_generator.reference); then the
# onboarding curve at a from-scratch budget of BUDGET body steps (each row with 300 face GAN steps
# on its body, from the base's: edn onboard-curve --face-steps).
# Hours on 2 cores. A rerun skips what is done (ingested videos, the base, the curve's rows).
ONBOARD    ?= outputs/onboard
BASE_STEPS ?= 3000
BUDGET     ?= 1000
EDN        := $(PY) -m edn.cli
base-data: $(VENV)/.installed
	test -e $(ONBOARD)/base_videos/dancers.json || $(EDN) synth $(ONBOARD)/base_videos --dancers 12 --frames 480 \
	  --size 256x256 --seed 1 --palette base
	$(EDN) ingest $(ONBOARD)/base_videos --out $(ONBOARD)/base_ds --size 128x128

onboard: base-data
	test -e $(ONBOARD)/base_videos_b/dancers.json || $(EDN) synth $(ONBOARD)/base_videos_b --dancers 12 \
	  --frames 240 --size 256x256 --seed 3 --palette base --first 100
	$(EDN) ingest $(ONBOARD)/base_videos_b --out $(ONBOARD)/base_ds --size 128x128
	test -e $(ONBOARD)/heldout_videos/dancers.json || $(EDN) synth $(ONBOARD)/heldout_videos --dancers 3 \
	  --frames 480 --size 256x256 --seed 2 --palette heldout
	$(EDN) ingest $(ONBOARD)/heldout_videos --out $(ONBOARD)/heldout_ds --size 128x128
	test -e $(ONBOARD)/base-24.done || { $(EDN) train --dataset $(ONBOARD)/base_ds --model edn-onboard-base \
	  --videos $$(seq -f 'dancer_%02g' 0 11 | paste -sd,),$$(seq -f 'dancer_%g' 100 111 | paste -sd,) \
	  --config cpu_small --set generator.appearance=true --set lambda_l1=40 --set cpu_bf16=true \
	  --set steps=$(BASE_STEPS) && touch $(ONBOARD)/base-24.done; }
	test -e $(ONBOARD)/base-24-face.done || { $(EDN) train --dataset $(ONBOARD)/base_ds --model edn-onboard-base \
	  --videos $$(seq -f 'dancer_%02g' 0 11 | paste -sd,),$$(seq -f 'dancer_%g' 100 111 | paste -sd,) \
	  --stage face --config cpu_small --set face_generator.reference=true --set cpu_bf16=true --set steps=1200 \
	  && touch $(ONBOARD)/base-24-face.done; }
	$(EDN) onboard-curve --dataset $(ONBOARD)/heldout_ds --targets dancer_00,dancer_01,dancer_02 \
	  --base edn-onboard-base@candidate --config cpu_small --set generator.appearance=true --set steps=$(BUDGET) \
	  --fractions 0.05,0.1,0.25 --scratch-fractions 1 --out $(ONBOARD)/curve-24

# The base `make demo` fine-tunes from, shipped in edn/assets/demo-base (docs/base-model.md): the
# same 12 base dancers, BASE_STEPS steps with appearance figures, exported in fp16 (5.4 MB).
# About 50 min on 2 cores; the demo's dancers are not among them.
demo-base: base-data
	$(EDN) train --dataset $(ONBOARD)/base_ds --model edn-demo-base --videos $$(seq -f 'dancer_%02g' 0 11 | paste -sd,) \
	  --config cpu_small --set generator.appearance=true --set steps=$(BASE_STEPS)
	$(EDN) export-model --model edn-demo-base --alias candidate --out edn/assets/demo-base --half

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs
