# Set-up and entry points. `make demo` and `make test` work on a fresh machine of this project's kind.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch/torchvision are pinned to the builds that lie on this machine's disk; nothing may pull another.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install demo test test-slow lint bench fashion-mnist fortunes chromium clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[dev,detection,video,serve,minecraft]' $(TORCH_PINS)
	touch $@

install: $(VENV)/.installed

# Debian's Fashion-MNIST, when apt is available and the data set is missing (never downloaded by Python code).
fashion-mnist:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST: found in $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get install -y -q dataset-fashion-mnist || ( $$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist ) ) \
	    || echo "Fashion-MNIST: apt install failed; the digits data set still works"; \
	else echo "Fashion-MNIST: no apt-get here; pass data.root=PATH to use your own copy"; fi

# Debian's fortunes (the styled_text styles), when apt is available; the bundled subset works without it.
fortunes:
	@if [ -f /usr/share/games/fortunes/zippy ]; then echo "fortunes: found in /usr/share/games/fortunes"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get install -y -q fortunes || ( $$SUDO apt-get update -q && $$SUDO apt-get install -y -q fortunes ) ) \
	    || echo "fortunes: apt install failed; styled_text uses its bundled subset"; \
	else echo "fortunes: no apt-get here; styled_text uses its bundled subset"; fi

# Debian's chromium and chromium-driver for the web app's browser tests (Selenium drives them; no browser download).
chromium:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then echo "chromium: found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get install -y -q chromium chromium-driver || ( $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver ) ) \
	    || echo "chromium: apt install failed; the browser tests report themselves as skipped"; \
	else echo "chromium: no apt-get here; the browser tests report themselves as skipped"; fi

demo: install fashion-mnist fortunes
	$(VENV)/bin/imaginate demo --out runs/demo

test: install fashion-mnist fortunes chromium
	$(PY) -m pytest

test-slow: install fashion-mnist
	$(PY) -m pytest -m slow

lint: install
	$(VENV)/bin/ruff check imaginate tests benchmarks scripts

bench: install fashion-mnist
	$(PY) benchmarks/madam_lr_sweep.py

clean:
	rm -rf $(VENV) runs .pytest_cache
