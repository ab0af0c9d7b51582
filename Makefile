# Two commands do all the set-up (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/demo
ACCOUNTS ?= 5000
SEED ?= 7

PORT ?= 3000
BENCH_ACCOUNTS ?= 100000
BENCH_FLAGS ?= --spark

.PHONY: demo demo-data test install system-deps lint bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,spark]'
	touch $@

install: $(BIN)/.installed

system-deps:
	bash scripts/system-deps.sh

## the main job on the built-in synthetic world, ending with the page served
demo: demo-data
	@echo "serving the review page at http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	$(BIN)/inmarket serve --port $(PORT) --ranked $(DATA)/ranked.parquet

demo-data: install
	$(BIN)/inmarket generate --accounts $(ACCOUNTS) --seed $(SEED) --out $(DATA)
	$(BIN)/inmarket validate $(DATA)
	$(BIN)/inmarket features $(DATA) --out $(DATA)/features.parquet
	$(BIN)/inmarket train $(DATA)
	$(BIN)/inmarket promote
	$(BIN)/inmarket score $(DATA) --out $(DATA)/ranked.parquet
	$(BIN)/inmarket report --ranked $(DATA)/ranked.parquet --out $(DATA)/report.html
	$(BIN)/inmarket example-crm --out data/crm_export
	$(BIN)/inmarket validate data/crm_export --mapping data/crm_export/crm_mapping.toml

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

## every test, with everything the tests need installed first
test: install system-deps lint
	$(BIN)/python -m pytest

## benchmarks (not part of test): results in bench/results/, figures in BENCHMARKS.md
bench: install system-deps
	$(BIN)/python -m bench --accounts $(BENCH_ACCOUNTS) $(BENCH_FLAGS)

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
