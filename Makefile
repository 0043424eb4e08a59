# kimi.vllm: developer and operator entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The checkout, seen as the installed collection kimi.vllm (ansible.cfg points collections_path here).
COLLECTION_LINK := .build/collections/ansible_collections/kimi/vllm
SANITY_TREE := .build/sanity/ansible_collections/kimi/vllm

# Simulated fleet (make sim-up / make demo): node count and the profiles they cycle through.
NODES ?= 2
PROFILES ?= b200x8-570-fit
DEMO_INVENTORY := inventories/demo/hosts.yml
BASE_IMAGE := kimi-vllm/base:trixie

.PHONY: help venv lint unit sanity docs-check images integration molecule test demo sim-up sim-down bench build clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

venv: $(VENV)/.installed $(COLLECTION_LINK) ## Build .venv with every tool pinned (requirements-dev.txt)

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

lint: venv ## ruff, ansible-lint (production profile), actionlint, argument specs vs defaults
	ruff check .
	ruff format --check .
	ansible-lint
	actionlint .github/workflows/*.yml
	$(PYTHON) tests/sim/profiles/make_synthetic.py --check

unit: venv ## Unit tests (module_utils, modules, filters, the stand-in server)
	pytest -q tests/unit tests/standin

# ansible-test wants the collection at ansible_collections/<ns>/<name> and a real directory, so the
# sanity run works on a copy of the tracked (and new, unignored) files.
# ansible-test bootstraps pip in each venv from a script it downloads from a host CI cannot reach.
ANSIBLE_TEST_GET_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py

sanity: venv ## ansible-test sanity, in its own venvs (no test containers can be pulled here)
	mkdir -p $(dir $(ANSIBLE_TEST_GET_PIP)) && cp tests/sanity/get_pip_offline.py $(ANSIBLE_TEST_GET_PIP)
	rm -rf .build/sanity && mkdir -p $(SANITY_TREE)
	git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
	  | tar --null -T - -cf - | tar -xf - -C $(SANITY_TREE)
	# Collections we depend on sit beside ours, where ansible-test's venvs look for them.
	mkdir -p .build/sanity/ansible_collections/community
	cp -r "$$($(BIN)/python -c 'import ansible_collections.community.docker as m; print(list(m.__path__)[0])')" \
	  .build/sanity/ansible_collections/community/docker
	# ansible-test picks its targets from git: an index in the copy is enough.
	cd $(SANITY_TREE) && git init -q && git add -A && ansible-test sanity --venv --python 3.11 --color no

docs-check: venv ## Module docs render; the collection builds
	for m in $$(ls plugins/modules/*.py | xargs -n1 basename | sed 's/\.py$$//'); do \
	  ansible-doc -t module kimi.vllm.$$m > /dev/null || exit 1; done
	rm -rf .build/dist && ansible-galaxy collection build --output-path .build/dist . > /dev/null
	@ls .build/dist

images: venv ## Build the simulation images (base, node) and publish the stand-in vLLM to the local registry
	tests/sim/build-base-image.sh trixie $(BASE_IMAGE)
	ansible-playbook -i localhost, tests/sim/images.yml
	tests/registry/start.sh
	ansible-playbook -i localhost, tests/standin/publish.yml

integration: venv images ## Modules and roles against the stand-in server and this machine's docker engine
	pytest -q tests/integration

molecule: venv images ## Molecule scenarios against simulated nodes
	molecule test --all

test: lint unit sanity docs-check integration molecule ## Everything CI runs

sim-up: venv images ## Start NODES simulated nodes (PROFILES cycles over them) and write inventories/demo/hosts.yml
	$(PYTHON) tests/sim/write-inventory.py --nodes $(NODES) --profiles $(PROFILES) --output $(DEMO_INVENTORY)
	ansible-playbook -i $(DEMO_INVENTORY) tests/sim/up.yml

sim-down: venv ## Remove every simulated node and what it started
	ansible-playbook -i localhost, tests/sim/down.yml

demo: sim-up ## Deploy on the simulated fleet: preflight, then the (stand-in) vLLM server
	ansible-playbook -i $(DEMO_INVENTORY) playbooks/deploy.yml

# Not part of `make test`: benchmarks measure, they do not pass or fail. The vLLM client venv is ~6.5 GB.
bench: venv ## Benchmarks of the vllm_bench instrument against vllm bench serve (docs/benchmarks.md)
	benchmarks/setup-vllm-venv.sh
	python3 benchmarks/instrument.py

build: venv ## Build the collection tarball into .build/dist
	rm -rf .build/dist && ansible-galaxy collection build --output-path .build/dist .

clean: ## Remove build outputs (keeps the venv)
	rm -rf .build/sanity .build/dist
