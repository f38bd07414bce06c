# llmfleet developer commands. Everything installs what it needs (scripts/bootstrap.sh).
#   make lab      the main job: bring up the built-in lab and deploy + verify a model on it
#   make test     every test: lint, unit, collection build, integration, molecule scenarios
#   make check    the fast loop: lint + unit (under 3 minutes)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_HOME := $(CURDIR)/.cache/ansible
export ANSIBLE_NOCOLOR := 1
export PY_COLORS := 0
PYTEST := pytest -p no:cacheprovider

.PHONY: bootstrap lab lab-down check lint unit test build integration molecule

bootstrap:
	@bash scripts/bootstrap.sh

LAB_MODEL := .cache/lab/models/llmfleet-tiny

lab: bootstrap
	test -f $(LAB_MODEL)/config.json || python lab/tinymodel/build.py --out $(LAB_MODEL)
	python lab/fleet.py up --inventory inventories/lab/hosts.yml
	ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml -e llmfleet_verify_report=$(CURDIR)/.cache/lab/verify.json
	@echo "lab is up: export OPENAI_API_KEY=llmfleet-lab; the verify report is .cache/lab/verify.json; make lab-down removes it"

lab-down:
	python3 lab/fleet.py destroy --fleet lab

check: bootstrap lint unit

lint:
	ruff check .
	ruff format --check .
	ansible-lint --offline

unit:
	$(PYTEST) tests/unit

test: check integration molecule

# The vLLM tests serve the tiny model from a venv that lab/serve_tiny.py builds (or reuses) offline.
integration: bootstrap
	venv=$$(python lab/serve_tiny.py --prepare | python -c 'import json, sys; print(json.load(sys.stdin)["venv"])'); \
	LLMFLEET_VLLM_VENV=$$venv $(PYTEST) tests/integration

molecule: bootstrap
	molecule test --all
