# The two commands a user needs: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EMBEDDERS ?= 1
ARGS ?=
PACKAGES := shared services/ingest services/embedder services/search services/explainer services/gateway
# Reinstall only when a dependency declaration changed.
STAMP := $(VENV)/.installed-$(shell cat $(addsuffix /pyproject.toml,$(PACKAGES)) requirements-dev.txt constraints.txt 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: install run test unit lint typecheck format clean-data help eval bench train-ranker train-encoder

help:
	@echo "make run [EMBEDDERS=N]   start everything locally and ingest the demo catalog"
	@echo "make test                install what is missing and run the whole test suite"
	@echo "make unit                the unit tests alone (no servers, seconds)"
	@echo "make lint / typecheck    ruff / mypy strict"
	@echo "make eval                search and recommendation quality on ../shared/data (docs/evaluation.md)"
	@echo "make train-ranker        retrain the learned ranker on the tomt_dev tune split (its card: services/search/marquee_search/models/RANKER.md)"
	@echo "make train-encoder       fine-tune the movie-tuned encoder, measure its gates, package it (its card: shared/marquee_shared/model/bundles/movie-tuned/MODEL.md)"
	@echo "make bench               performance benchmarks, under 15 minutes (docs/performance.md; needs wrk)"

install: $(STAMP)

$(STAMP):
	@command -v redis-server >/dev/null || { echo "redis-server is missing: sudo apt-get install -y redis-server (or set REDIS_URL for make run)"; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# torch first, pinned: the CPU build (an unpinned torch pulls a multi-GB CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	@# shared[torch]: development needs the torch backend and the ONNX export; the images do not.
	$(BIN)/pip install -q -c constraints.txt -r requirements-dev.txt -e 'shared[torch]' \
		$(addprefix -e ,$(PACKAGES))
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(BIN)/python scripts/devstack.py --embedders $(EMBEDDERS) $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(ARGS)

# Embeds the 15.8k-movie catalog once per model (cached under .data/eval/), then measures.
eval: install
	$(BIN)/python bench/eval_search.py --write
	$(BIN)/python bench/filters.py --write
	$(BIN)/python bench/eval_recs.py --write
	@# Stock against the packaged movie-tuned encoder, side by side (embeds the catalog once more).
	$(BIN)/python bench/eval_encoder.py --model movie-tuned --write

# The learned ranker, from the tune split of tomt_dev (seeded: the same file on every run).
train-ranker: install
	$(BIN)/python bench/train_ranker.py

# The movie-tuned encoder (issue 14): fine-tune on 80 % of tomt_dev (split by answer film),
# export int8, measure stock against tuned on the held-out 20 %, package the bundle and its card.
train-encoder: install
	$(BIN)/python bench/train_encoder.py --ship

# Throughput, freshness, search under load, memory (issue 6); results in bench/results/.
bench: install
	$(BIN)/python bench/run_all.py $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared services scripts/devstack.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-data:
	rm -rf .data
