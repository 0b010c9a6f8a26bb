# jupyterhub-baremetal: set up, try in a sandbox, test, benchmark.
# `make sandbox` = set up + converge the playbook into a throwaway local systemd host container.
# `make test`    = the whole test suite against real Docker, JupyterHub, systemd and Prometheus.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
# Debian's own Python: the venv it makes is usable by the unprivileged panel user too.
SYSTEM_PYTHON ?= /usr/bin/python3
CACHE ?= /var/cache/jbm
# The version the node role installs by default: it runs on the distributions' Node 18 too.
CHP_VERSION ?= 4.6.3
CHP_PREFIX := $(CACHE)/chp-$(CHP_VERSION)
export JBM_CHP := $(CHP_PREFIX)/node_modules/.bin/configurable-http-proxy
# --- OIDC: the tests' OpenID provider (npm oidc-provider by panva; tests/harness/oidc.py) ---
OIDC_PROVIDER_VERSION ?= 9.13.3
OIDC_PROVIDER_PREFIX := $(CACHE)/oidc-provider-$(OIDC_PROVIDER_VERSION)
export JBM_OIDC_PROVIDER := $(OIDC_PROVIDER_PREFIX)/node_modules/oidc-provider/lib/index.js
APT_PACKAGES := docker.io debootstrap prometheus prometheus-process-exporter chromium \
	chromium-driver gcc make python3-venv ca-certificates \
	openssh-client openssl iproute2 tar gzip qemu-system-x86 qemu-utils e2fsprogs
# LDAP: the tests' directory (tests/harness/ldap.py: slapd, ldapadd)
APT_PACKAGES += slapd ldap-utils

.PHONY: deps apt venv chp oidc-provider dockerd images vm-image test unit integration system vm molecule bench lint sandbox clean

deps: apt venv chp oidc-provider  ## everything the tests and the sandbox need on this machine

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: tests/requirements.txt roles/hub/files/requirements.txt spawner/pyproject.toml metrics/pyproject.toml | apt
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r tests/requirements.txt -e ./spawner -e ./metrics
	touch $@

venv: $(VENV)/.installed

chp: $(JBM_CHP)
$(JBM_CHP):
	mkdir -p $(CHP_PREFIX)
	npm install --no-audit --no-fund --prefix $(CHP_PREFIX) configurable-http-proxy@$(CHP_VERSION)

# OIDC: the tests' OpenID provider, cached like configurable-http-proxy.
oidc-provider: $(JBM_OIDC_PROVIDER)
$(JBM_OIDC_PROVIDER):
	mkdir -p $(OIDC_PROVIDER_PREFIX)
	npm install --no-audit --no-fund --prefix $(OIDC_PROVIDER_PREFIX) oidc-provider@$(OIDC_PROVIDER_VERSION)

dockerd: venv
	$(PY) -c "from tests.harness.dockerd import ensure_dockerd; ensure_dockerd()"

images: dockerd vm-image
	$(PY) -m tests.harness.images

# The cgroup v2 tier's Debian 12 VM: image and booted snapshot, cached by content in $(CACHE)/vm.
vm-image: venv
	$(PY) -m tests.harness.vm

unit: venv
	$(PY) -m pytest tests/unit

integration: deps images
	$(PY) -m pytest tests/integration

system: deps images
	$(PY) -m pytest tests/system

vm: deps images
	$(PY) -m pytest tests/vm

# Every role's molecule scenario (roles/<role>/molecule/default); one role alone:
# cd roles/<role> && PATH=$(CURDIR)/$(VENV)/bin:$$PATH molecule test
molecule: deps images
	$(PY) -m pytest tests/system/test_molecule.py

test: deps images  ## the README's test command
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	cd ansible && ../$(VENV)/bin/ansible-lint --profile production ../roles site.yml

bench: deps images
	$(PY) tests/benchmarks/run_all.py

sandbox: deps images
	$(PY) ansible/sandbox/sandbox.py

clean:
	rm -rf $(VENV)
