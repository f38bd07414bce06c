# llmfleet developer commands. Everything installs what it needs (scripts/bootstrap.sh).
#   make lab      the main job: bring up the built-in lab and deploy + verify a model on it
#   make test     every test: lint, unit, collection build, integration, molecule scenarios, as
#                 timed stages with the long downloads prefetched (scripts/stages.py); the times
#                 end up in a table and in .cache/stages.json
#   make check    the fast loop: lint + unit (under 3 minutes)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_HOME := $(CURDIR)/.cache/ansible
export ANSIBLE_NOCOLOR := 1
export PY_COLORS := 0
PYTEST := pytest -p no:cacheprovider

.PHONY: bootstrap lab lab-down check lint unit test build integration molecule prefetch-root prefetch-lab prefetch-cuda

# Every molecule scenario, in the order `make test` runs them (one stage each); scripts/stages.py
# refuses to run when a scenario directory is missing here.
MOLECULE_SCENARIOS := default nvidia_driver model_weights model_weights_peer e2e gpu

bootstrap:
	@bash scripts/bootstrap.sh

# The tiny model is cached per machine; .cache/lab/models/llmfleet-tiny links to it.
lab: bootstrap
	python lab/serve_tiny.py --prepare-model
	python lab/fleet.py up --inventory inventories/lab/hosts.yml
	python lab/tls.py inventory .cache/lab/tls inventories/lab/hosts.yml
	ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml -e llmfleet_verify_report=$(CURDIR)/.cache/lab/verify.json
	@echo "lab is up: export OPENAI_API_KEY=llmfleet-lab SSL_CERT_FILE=$(CURDIR)/.cache/lab/tls/ca.pem CURL_CA_BUNDLE=$(CURDIR)/.cache/lab/tls/ca.pem; the verify report is .cache/lab/verify.json; make lab-down removes it"

lab-down:
	python3 lab/fleet.py destroy --fleet lab

check: bootstrap lint unit

lint:
	ruff check .
	ruff format --check .
	ansible-lint --offline

unit:
	$(PYTEST) tests/unit

test:
	@python3 scripts/stages.py

build: bootstrap
	$(PYTEST) tests/integration/test_collection_build.py

# The vLLM tests serve the tiny model from a venv that lab/serve_tiny.py builds (or reuses) offline.
integration: bootstrap
	venv=$$(python lab/serve_tiny.py --prepare | python -c 'import json, sys; print(json.load(sys.stdin)["venv"])'); \
	LLMFLEET_VLLM_VENV=$$venv $(PYTEST) tests/integration --ignore=tests/integration/test_collection_build.py

molecule: bootstrap
	molecule test --all

# What `make test` builds in the background once bootstrap is done (each reuses what is cached):
# the test fleet's base roots (Debian 12 and 13), the lab's vLLM venv and model, the gpu
# scenario's CUDA wheelhouses.
prefetch-root:
	python lab/fleet.py build-root
	python lab/fleet.py build-root --suite trixie

prefetch-lab:
	python lab/serve_tiny.py --prepare

# The wheels the role chooses for the test hosts (their python3 and C library): Debian 12 and 13
# (glibc 2.41, served manylinux_2_40, the newest tag uv knows).
FLEET_PYTHON := 3.11
FLEET_PLATFORM := x86_64-manylinux_2_36
FLEET_TRIXIE_PYTHON := 3.13
FLEET_TRIXIE_PLATFORM := x86_64-manylinux_2_40

prefetch-cuda:
	ansible-playbook scripts/prefetch_wheelhouse.yml -e vllm_runtime_device=cuda \
	  -e vllm_runtime_python_version=$(FLEET_PYTHON) -e vllm_runtime_platform=$(FLEET_PLATFORM)
	ansible-playbook scripts/prefetch_wheelhouse.yml -e vllm_runtime_device=cuda \
	  -e vllm_runtime_python_version=$(FLEET_TRIXIE_PYTHON) -e vllm_runtime_platform=$(FLEET_TRIXIE_PLATFORM)
