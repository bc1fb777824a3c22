# sealnet developer and CI entry points. `make setup` is idempotent: it installs
# missing Debian packages (only when run as root) and (re)builds .venv when
# pyproject.toml changed. CI runs .ci/run, which calls `make test`.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sealnet-installed
# Parallel pytest workers; kernel tests are safe in parallel (per-test random
# namespace and interface names).
WORKERS ?= 2
PYTEST_ARGS ?=
# wireguard-go, wireguard-tools and stunnel4: the peers benchmarks/bench_compare.py measures against.
APT_PACKAGES := clang-19 llvm-19 libbpf-dev bpftool iproute2 ethtool iperf3 tcpdump wireguard-go wireguard-tools stunnel4

.PHONY: setup apt venv demo test test-serial bench clean vsix

setup: apt venv

# Install only what is missing, so a second `make setup` does no network I/O.
apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
	  echo "apt: all packages present"; \
	elif [ "$$(id -u)" -eq 0 ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "apt: missing$$missing (run 'sudo make setup' to install them)" >&2; \
	fi

venv: $(STAMP)

# The editable install maps sealnet.* onto the repository's folders through an
# import hook, which file-reading tools (import-linter) cannot follow; a tree of
# links with the installed shape, put on sys.path, lets `lint-imports` run as is.
SHAPE := $(VENV)/installed-shape
SHAPED := contracts compiler runtime grammar bpf_templates

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test,lsp,demo,bench]'
	@mkdir -p $(SHAPE)/sealnet
	@for d in $(SHAPED); do ln -sfn "$(CURDIR)/$$d" "$(SHAPE)/sealnet/$$d"; done
	@echo "$(CURDIR)/$(SHAPE)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sealnet-installed-shape.pth"
	@touch $@

# Exit code 5 means "no tests collected": report it loudly and keep it a failure.
define run_pytest
	rc=0; $(BIN)/pytest $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc
endef

test: setup
	@$(call run_pytest,-q -n $(WORKERS) $(PYTEST_ARGS))

test-serial: setup
	@$(call run_pytest,-q $(PYTEST_ARGS))

demo: setup
	@bash scripts/demo.sh

# Each benchmark prints its figures as ratios against a baseline measured in the same run.
bench: setup
	@for b in bench_lint bench_verify bench_datapath bench_aead bench_seal bench_compare bench_cluster bench_node; do \
		echo "== $$b"; $(BIN)/python benchmarks/$$b.py; done

# The VS Code extension (editors/vscode/README.md): needs Node 20 and npm, not the test suite.
vsix:
	cd editors/vscode && npm install --no-audit --no-fund && npm run package

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
