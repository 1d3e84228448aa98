VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench install system-deps clean

$(STAMP): pyproject.toml | system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[test]'
	$(PY) -m pip install --no-deps sinabs==3.1.3 rockpool==3.1.0 'pbr>=6'  # the 'interop' extra, see pyproject.toml
	touch $(STAMP)

install: $(STAMP)

# espeak-ng (Debian package) synthesises the SpokenDigits data set; installed where we are root.
system-deps:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq espeak-ng; \
	  else \
	    echo "note: espeak-ng is missing; SpokenDigits needs it (install the Debian package 'espeak-ng' as root)"; \
	  fi; }

demo: $(STAMP)
	$(PY) -m spikeflow demo

test: $(STAMP)
	OMP_NUM_THREADS=2 $(PY) -m pytest -q -p no:cacheprovider

# SpikingJelly (a peer of benchmarks/memory.py) declares dependencies that would replace torch:
# only the package itself and loguru, without their dependencies.
$(VENV)/.peers: $(STAMP)
	$(PY) -m pip install --no-deps spikingjelly==2.0.0 loguru==0.7.3
	touch $@

bench: $(STAMP) $(VENV)/.peers
	OMP_NUM_THREADS=2 $(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
