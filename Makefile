# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Serve the demo protocols on the embedded SQLite store, signatures off (dev only).
run: $(STAMP)
	@echo "regulator: http://127.0.0.1:$${REGULATOR_PORT:-8080}  (protocols: ./protocols, store: ./var)"
	@echo "  curl -s -X POST http://127.0.0.1:$${REGULATOR_PORT:-8080}/hooks/twilio/voice \\"
	@echo "       -d CallSid=CAdemo1 -d From=+33612000001 -d To=+33466123456"
	@echo "  curl -s http://127.0.0.1:$${REGULATOR_PORT:-8080}/api/v1/reports/nimes/$$(date +%Y-%m)"
	REGULATOR_INSECURE_DEV=1 REGULATOR_LOG_FORMAT=$${REGULATOR_LOG_FORMAT:-console} $(BIN)/regulator serve

lint: $(STAMP)
	$(BIN)/ruff check regulator tests $(wildcard benchmarks)
	$(BIN)/ruff format --check regulator tests $(wildcard benchmarks)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The fast pure suites (no Redis, no browser, no SIP peer): seconds, for every edit.
unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# Everything: lint, types, then every suite (contract, integration, e2e, faults, …).
test: lint typecheck
	$(BIN)/pytest -q

# Load and latency harness (needs Debian's wrk and redis-server; see benchmarks/README.md).
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk; } || \
	  { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
