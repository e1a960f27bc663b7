# One entry point for people and CI. Every target installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export HYBRIDSTACK_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hybridstack
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)

UNIT_JOBS ?= 2
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

.PHONY: help host-deps tools lint sanity unit integration build-test molecule test up down bench

help:
	@echo "make up      bring the whole stack up on a throwaway local box"
	@echo "make down    destroy that box"
	@echo "make test    lint, sanity, unit and integration tests, collection build, every Molecule scenario"
	@echo "make bench   timing benchmarks (box boot, converges)"

host-deps:
	@scripts/host-deps

tools: host-deps
	@scripts/bootstrap-tools

lint: tools
	yamllint -s .
	ansible-lint
	scripts/role-docs --check
	python -m pytest -q -p no:cacheprovider tests/meta

sanity: tools
	scripts/sanity

# UNIT_JOBS pytest-xdist workers (default 2): most of the time goes to the
# ansible-playbook runs of tests/playbooks, each its own process and temp dir.
unit: tools
	python -m pytest -q -p no:cacheprovider -n $(UNIT_JOBS) --dist worksteal tests/unit tests/playbooks

# Against this machine's package index, real venvs and a throwaway PostgreSQL
# cluster; a pytest session of its own (its conftest is not the unit tests').
integration: tools
	python -m pytest -q -p no:cacheprovider -n $(UNIT_JOBS) --dist worksteal tests/integration

build-test: tools
	python -m pytest -q -p no:cacheprovider tests/build

# MOLECULE_JOBS scenarios at a time (default 2): scripts/run-scenarios.
molecule: tools
	@scripts/run-scenarios $(SCENARIOS)

# The checks before the scenarios run side by side (CHECK_JOBS at a time,
# each one's output kept whole): lint and sanity are one process each, and
# run sequentially they left a core idle for minutes.
CHECK_JOBS ?= 3
test: tools
	$(MAKE) --no-print-directory --output-sync=target -j $(CHECK_JOBS) lint sanity unit integration build-test
	$(MAKE) --no-print-directory molecule

up: tools
	scripts/demo up

down: tools
	scripts/demo down

bench: tools
	python tests/bench/run.py
