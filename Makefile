# One virtual environment, made on first use; every target installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint check audit clean browser emulator

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/mcbench run

# The browser test of the report drives Debian's chromium (no browser download); install it where it is missing.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser test of the report"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) || \
	  echo "WARNING: could not install chromium: tests/test_browser.py will be SKIPPED (see its reason)"; }

# tests/test_int8_numerics.py runs INT8 kernels on an emulated AVX2 CPU without VNNI (Debian's qemu-user).
emulator:
	@command -v qemu-x86_64 >/dev/null || { \
	  echo "installing Debian's qemu-user for the INT8 numerics test"; \
	  (apt-get update -qq && apt-get install -y -qq qemu-user) || \
	  echo "WARNING: could not install qemu-user: tests/test_int8_numerics.py's emulated-CPU test will be SKIPPED"; }

# Two workers: much of the suite waits (servers starting, load steps of fixed length, child processes), so two run
# side by side in less wall time; --dist loadscope keeps a module's tests (and its module-scoped fixtures, the
# real-model runs) on one worker.
test: install browser emulator
	$(BIN)/python -m pytest -n 2 --dist loadscope

test-fast: install
	$(BIN)/python -m pytest -n 2 --dist loadscope -m 'not slow'

# ruff, then mypy --strict on the public API (mcbench, mcbench.api) and what it uses. The type checker reads a
# copy laid out as the wheel is: it does not follow package-dir, so on the source tree it would see
# mcbench.reports and the other mapped folders as missing and check nothing through them.
lint: install
	$(BIN)/ruff check .
	rm -rf .typecheck && $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --target .typecheck .
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml --cache-dir ../.mypy_cache -m mcbench -m mcbench.api

check: lint test

# Known vulnerabilities in the installed (locked) dependency set. --strict: a package that could not be
# audited (no network, a mirror without per-version data) fails the step instead of passing silently.
audit: install
	$(BIN)/python -m pip freeze --exclude-editable > $(VENV)/audited-requirements.txt
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off --desc

clean:
	rm -rf runs .pytest_cache .ruff_cache
