# make setup | demo | test | lint | bench        (every target sets itself up first)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
STAMP := $(VENV)/.installed
CDK := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_VERSION_CHECK=1 npx --no-install cdk

.PHONY: setup demo test test-fast lint bench bench-open-set bench-far bench-scale bench-train-scale bench-load bench-memory synth deploy clean

# Fetches the weights and sample set, then converts the networks to ONNX once (about a
# minute and a half) and checks them against TensorFlow; every later run only checks the
# hashes (under a second), so a corrupted file is fetched or converted again.
setup: $(STAMP)
	$(BIN)/python -m facerec.vision.convert --cache-dir $(CACHE)

# The venv with the pinned packages, and the pinned CDK CLI from npm (node_modules/).
$(STAMP): requirements.txt requirements-convert.txt requirements-dev.txt requirements-infra.txt pyproject.toml package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/facerec demo

test: setup
	$(BIN)/python -m pytest

# The fast lane for quick edits: every test that does not load the models (about a minute).
test-fast: setup
	$(BIN)/python -m pytest -m "not model"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python bench/run.py

# Open-set identification on LFW (about 50 minutes) and galleries up to 1 M faces (about an hour).
bench-open-set: setup
	$(BIN)/python bench/open_set.py

bench-scale: setup
	$(BIN)/python bench/scale.py

# The FaceNet engine's classifiers side by side and `facerec train`'s steps at 100 to 10,000
# people (LFW dev-train and synthetic people drawn like them; about 50 minutes).
bench-train-scale: setup
	$(BIN)/python bench/train_scale.py

# The calibrated "unknown" threshold's real false-accept rate on LFW strangers, both crops
# (about 15 minutes to embed the first time, cached in /tmp; then about 5 minutes).
bench-far: setup
	$(BIN)/python bench/far_calibration.py --seeds 20

# Peak memory of identify on a 6000x6000 photo (about 3 minutes); BEFORE=DIR also measures
# another checkout's code (e.g. made with `git worktree add DIR <commit>`).
bench-memory: setup
	$(BIN)/python bench/decode_memory.py $(if $(BEFORE),--before $(BEFORE))

# `facerec serve` under 1, 4 and 16 concurrent clients, its memory, idle clients, and
# 1, 2 and 4 workers compared (about 20 minutes).
bench-load: setup
	$(BIN)/python bench/load_server.py

# CloudFormation for both environments, offline (no AWS account needed).
synth: setup
	$(CDK) synth -c env=dev --quiet
	$(CDK) synth -c env=prod --quiet

# Needs AWS credentials and a Docker engine: ENV=prod make deploy for production.
deploy: setup
	$(CDK) deploy --all -c env=$(or $(ENV),dev)

clean:
	rm -rf workspace cdk.out .pytest_cache .ruff_cache
