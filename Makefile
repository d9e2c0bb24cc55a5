# `make experiment NAME=sine_long_gap` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install experiment test test-all bench bench-layers bench-windows bench-memory bench-sweep bench-serving bench-experiment bench-forecast why-lstm long-memory lint format ui clean

install: $(INSTALLED)

# Re-installs only when pyproject.toml changes.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

experiment: install
ifndef NAME
	@echo "usage: make experiment NAME=<experiment> [ARGS='--set train.epochs=2']"
	@echo "available experiments:"
	@$(BIN)/forecast list | sed 's/^/  /'
else
	$(BIN)/forecast run $(NAME) $(ARGS)
endif

# The contributor's loop: everything but the tests that start processes, a few minutes.
test: install
	$(BIN)/python -m pytest -q -m "not processes"

# Then the end-to-end tests that start processes: servers, worker pools, a two-worker
# cluster, Ray, signals, fresh interpreters. CI runs this.
test-all: test
	$(BIN)/python -m pytest -q -m processes

# Speed and memory against Keras' own, each measured in one run; bench-layers alone takes
# 10-15 minutes.
bench: bench-layers bench-windows bench-sweep bench-serving

# Our LSTM, SimpleRNN and GRU against Keras' own; sLSTM and mLSTM-loop against our LSTM;
# mLSTM-parallel against mLSTM-loop. On 2 busy cores the last three take about 10 minutes.
# Subset with e.g. `make bench-layers ARGS='--layers LSTM --grid 64x200x64 --repeats 3'`.
bench-layers: install
	$(BIN)/python benchmarks/bench_layers.py $(ARGS)

bench-windows: install
	$(BIN)/python benchmarks/bench_windows.py

# Peak memory of one (capped) training epoch, windows streamed against today's copies: a
# 10-million-step series and a 10,000-series panel, each path in its own process; a few minutes.
bench-memory: install
	$(BIN)/python benchmarks/bench_memory.py $(ARGS)

# Trials per minute of one tiny sweep with 1 worker and with 2 (or ARGS='--workers N').
bench-sweep: install
	$(BIN)/python benchmarks/bench_sweep.py $(ARGS)

# One forecast from a logged series model behind `mlflow models serve`, against in-process.
bench-serving: install
	$(BIN)/python benchmarks/bench_serving.py $(ARGS)

# The default sweep the old way (1 worker, every epoch) and the new default; ~20 minutes.
bench-experiment: install
	$(BIN)/python benchmarks/bench_experiment.py $(ARGS)

# The networks against the statistical forecasters on 8 real series of datasets/ (the table of
# docs/benchmarks.md); about an hour on 2 cores. A quick subset of a few minutes:
# `make bench-forecast ARGS='--series lynx,air_passengers --seeds 1'`.
bench-forecast: install
	$(BIN)/python benchmarks/bench_forecast.py $(ARGS)

# The figures of docs/why-lstm.md, from a real run (an RNN and two LSTMs at gap 100); 1-2 min.
why-lstm: install
	$(BIN)/python docs/why_lstm.py $(ARGS)

# The figure and numbers of docs/results.md's long memory on taylor: each network with an
# input window of a day, a week and two weeks; about 15 minutes on 2 cores.
long-memory: install
	$(BIN)/python docs/long_memory.py $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The MLflow UI on mlflow.db, printing where a sweep's runs are (NAME= for an experiment's).
ui: install
	$(BIN)/forecast ui $(NAME)

# Keeps mlflow.db and mlartifacts/: runs are results, not build output.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
