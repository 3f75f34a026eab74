# nova3r_ros — every job is one target; each sets up the venv first (idempotent, seconds when done).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo test test-fast lint bench clean

setup:
	tools/setup.sh

demo: setup
	$(VENV)/bin/nova3r_demo

lint: setup
	$(PY) -m ruff check .

# The test command (README, .ci/run): lint, then every test but the soaks, slowest listed.
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not soak" --durations=15 $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not soak" -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/nova3r_bench pack

clean:
	rm -rf $(VENV) build install log demo_output runs bench_output eval_output
