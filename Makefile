VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench install system-deps constraints clean

# Every install is pinned by constraints.txt (exact versions of the whole environment); torch
# first, so that no resolver replaces the CPU build (docs/install.md).
$(STAMP): pyproject.toml constraints.txt | system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt torch
	$(PY) -m pip install -c constraints.txt -e '.[test]'
	$(PY) -m pip install -c constraints.txt --no-deps sinabs rockpool pbr  # the 'interop' extra, see pyproject.toml
	touch $(STAMP)

# SpikingJelly (a benchmark peer) declares torchaudio, tensorboard and more that it does not need
# here and that would pull another torch: installed without its dependencies.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -c constraints.txt --no-deps spikingjelly loguru
	touch $(BENCH_STAMP)

install: $(STAMP)

# Debian packages, installed where we are root: espeak-ng synthesises the SpokenDigits data set;
# chromium renders the run report in the browser check (tests/report/test_browser.py).
system-deps:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq espeak-ng; \
	  else \
	    echo "note: espeak-ng is missing; SpokenDigits needs it (install the Debian package 'espeak-ng' as root)"; \
	  fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq chromium; \
	  else \
	    echo "note: chromium is missing; the report's browser check is skipped (install the Debian package 'chromium' as root)"; \
	  fi; }

demo: $(STAMP)
	$(PY) -m spikeflow demo

test: $(STAMP)
	OMP_NUM_THREADS=2 $(PY) -m pytest -q -p no:cacheprovider

bench: $(BENCH_STAMP)
	OMP_NUM_THREADS=2 $(PY) benchmarks/run_all.py

# Rewrite constraints.txt from the working .venv after a dependency changed (then rerun make test).
constraints: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -iv '^spikeflow' | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
