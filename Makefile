# synthseal: one entry point for set-up, demo, tests and benchmarks.
# Every target installs what it needs on a fresh Debian machine with Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup demo test test-long bench fuzz model clean

help:
	@echo "make demo   - set up and run the simulated device end to end"
	@echo "make test   - set up and run the test suite"
	@echo "make bench  - set up and write benchmark JSON to build/bench.json"
	@echo "make test-long - the pulls of 10,000 records at 9600/38400/115200 baud (about 25 minutes)"
	@echo "make fuzz   - run the atheris targets (framing, verify) for FUZZ_SECONDS each (default 300)"
	@echo "make model  - rebuild the int8 classifier in models/ (installs TensorFlow in .venv-train)"

setup: $(VENV)/.stamp-python .stamp-apt node_modules/.stamp-npm

# Debian packages: exiftool is the external reader of the TC260 XMP label in tests;
# systemd's systemd-analyze checks the shipped unit; lrzsz (sz/rz, ZMODEM) is the reference
# transfer that `make bench` compares with; openssl is the independent check of the
# certificates and CRLs the vendor CA issues.
.stamp-apt: Makefile
	@command -v exiftool >/dev/null && command -v systemd-analyze >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libimage-exiftool-perl systemd; }
	@command -v sz >/dev/null && command -v rz >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lrzsz; }
	@command -v openssl >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
	@touch $@

# Debian's own python3 ships venv/ensurepip separately (python3-venv). pdqhash has no
# wheels: pip compiles it, which needs g++ and the Python headers (python3-dev).
$(VENV)/.stamp-python: pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	@command -v g++ >/dev/null && $(PYTHON) -c 'import os, sysconfig; \
	  assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null || { \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ python3-dev; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[device,dev]'
	@touch $@

# Real MicroPython (WebAssembly port under Node) runs the portable core in the tests.
node_modules/.stamp-npm: package.json package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	npm ci --silent --no-audit --no-fund
	@touch $@

demo: setup
	$(VENV)/bin/synthseal-host demo --out demo-output

test: setup
	$(PY) -m pytest -q

test-long: setup
	$(PY) -m pytest -q -m long

bench: setup
	@mkdir -p build
	$(PY) -m synthseal.firmware_tools.bench --out build/bench.json

# Longer fuzzing than the suite's bounded hypothesis runs: the same harnesses under
# atheris (libFuzzer). atheris is installed here only: the suite does not need it.
FUZZ_SECONDS ?= 300
fuzz: setup
	$(PY) -m pip install -q atheris
	@mkdir -p build/fuzz
	cd build/fuzz && ../../$(PY) ../../tests/fuzz/fuzz_framing.py -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=1024
	cd build/fuzz && ../../$(PY) ../../tests/fuzz/fuzz_verify.py -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048

clean:
	rm -rf $(VENV) node_modules build demo-output .stamp-apt

-include firmware_tools/model/model.mk
