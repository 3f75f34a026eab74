# nova3r_ros — every job is one target; each sets up the venv first (idempotent, seconds when done).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo test test-fast lint bench soak clean

setup:
	tools/setup.sh

demo: setup
	$(VENV)/bin/nova3r_demo

lint: setup
	$(PY) -m ruff check .

# The test command (README, .ci/run): lint, every test but the soaks (slowest listed, line
# coverage of the package: files below 100 % and the TOTAL), then the 60 s soak test (about 90 s).
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not soak" --durations=15 --cov --cov-report=term-missing:skip-covered \
	  $(PYTEST_ARGS)
	$(PY) -m pytest -m soak -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not soak" -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/nova3r_bench pack

# The 10-minute soak of issue 12 (3 cameras, 30 Hz, 640x480, shipped model): CSV + PNG + verdict.
soak: setup
	$(PY) -m nova3r_ros.ros.soak --duration 600 --out soak_output

clean:
	rm -rf $(VENV) build install log demo_output runs bench_output eval_output soak_output
