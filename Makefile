# Two entry points, both self-installing on a fresh Debian machine run as root:
#   make demo   -- render the default POV-Ray scene once, train loe-nerf on it, evaluate it
#   make test   -- run the test suite (CPU only)
# A second run with nothing to do takes seconds: every step is guarded by a stamp file.

PY      := .venv/bin/python
STAMPS  := .venv/.stamps
APT_PKGS := libusb-1.0-0 libgl1 libgomp1 povray povray-examples ffmpeg chromium

.PHONY: demo test lint install

$(STAMPS)/apt:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else echo "not root or no apt-get: make sure these are installed: $(APT_PKGS)"; fi
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: $(STAMPS)/apt
	@test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/install: $(STAMPS)/venv pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(STAMPS)/install

test: $(STAMPS)/install
	$(PY) -m pytest -q -ra -p no:dash tests

lint: $(STAMPS)/install
	.venv/bin/ruff check nerf_loe method_configs data_scripts tests && .venv/bin/ruff format --check nerf_loe method_configs data_scripts tests

demo: $(STAMPS)/install
	$(PY) -m nerf_loe.demo
