# Two commands a newcomer needs: `make run` (the demo) and `make test` (every test).
# Each makes .venv under the repo and installs what it needs by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench chaos clean

# The console's browser tests drive Debian's chromium (Playwright's own download cannot work here).
$(STAMP): pyproject.toml
	@command -v chromium >/dev/null || apt-get install -y chromium || (apt-get update && apt-get install -y chromium)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# DEMO=1 is the only way into demo mode (the local simulator, the published demo secret);
# honcho hands it on to the processes of Procfile.demo, which set it too.
run: export DEMO = 1
run: $(STAMP)
	$(BIN)/competence-bridge migrate
	$(BIN)/competence-bridge seed-demo
	PATH="$(CURDIR)/$(BIN):$$PATH" DEMO_WEB_PORT=$${PORT:-8000} \
		$(BIN)/honcho start -f Procfile.demo -p $${PORT:-8000}

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The long fault runs (they stop and start this machine's RabbitMQ and PostgreSQL, so run them
# alone) and the model check at full size; figures go to docs/RELIABILITY.md.
chaos: $(STAMP)
	RUN_CHAOS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/chaos $(PYTEST_ARGS)

# The benchmark (bench/README.md): one run against this machine's PostgreSQL and RabbitMQ,
# results in bench/results/latest.md and .json. BENCH_ARGS: e.g. --quick, --profile, --parts 1,2.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
