# vesyncd: `make run` starts the daemon on safe loopback defaults; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test bench hardening venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install -q -e . --config-settings editable_mode=compat
	touch $@

$(TEST_STAMP): $(STAMP) setup.py
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	# The WebSocket conformance suite (Autobahn|Testsuite) runs on Python 2.7 where pyenv has it;
	# without it that one test is skipped with the reason.
	-$(BIN)/python -m bench.hardening.conformance --install
	touch $@

$(BENCH_STAMP): $(TEST_STAMP) setup.py
	$(BIN)/pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	touch $@

venv: $(STAMP)

## Start the demo in the foreground: the daemon with two simulated plugs, on loopback only (a default
## port another program holds is replaced by a free one). ARGS="..." adds daemon options, e.g.
## ARGS="--http tcp:8081:interface=127.0.0.1"; MQTT=1 adds a private mosquitto (when installed).
run: $(STAMP)
	$(BIN)/python -m vesyncd.launch --config etc/vesyncd-dev.toml $(if $(filter-out 0 no false,$(MQTT)),--mqtt) -- $(ARGS)

## Run every test (unit and loopback integration).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

## Benchmarks and soaks (minutes): prints a table and a JSON line. FULL=1 for the 10,000-plug profile.
## dnsperf and dnsmasq (Debian) are needed for the DNS part; it says so when they are missing.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(if $(FULL),--full)

## Hardening suite: fuzzing, conformance, abuse and faults, with a report (minutes; loopback only).
## QUICK=1 for the short variant.
hardening: $(TEST_STAMP)
	$(BIN)/python -m bench.dns_fuzz $(if $(QUICK),,--full)
	$(BIN)/python -m bench.hardening $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info twisted/plugins/dropin.cache
