# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean emoji

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is installed first and pinned so no dependency can pull another (CUDA) build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,finetune,serve,rewards,privacy,rdata]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/genlab train configs/digits-vae.yaml name=demo --overwrite
	$(BIN)/genlab eval runs/demo
	$(BIN)/genlab report runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

# Real colour images that exist offline: the npm registry's emoji sets (64 px), converted to image folders
# with a category per folder (genlab.modalities.image.emoji). The emoji-* recipes read them.
EMOJI_VERSION := 16.0.0
emoji: data/emoji/google-64/emoji.jsonl data/emoji/twitter-64/emoji.jsonl data/emoji/google-twitter-64

# Both sets in one folder, one sub-folder per domain (symlinks, no copies): the cyclegan recipe's two domains
# (class 0 = google, class 1 = twitter; see genlab.models.cyclegan)
data/emoji/google-twitter-64: data/emoji/google-64/emoji.jsonl data/emoji/twitter-64/emoji.jsonl
	mkdir -p $@
	ln -sfn ../google-64 $@/google
	ln -sfn ../twitter-64 $@/twitter

data/emoji/%-64/emoji.jsonl: | $(STAMP)
	mkdir -p data/emoji/npm
	cd data/emoji/npm && npm pack -q emoji-datasource-$*@$(EMOJI_VERSION)
	$(BIN)/python -m genlab.modalities.image.emoji data/emoji/npm/emoji-datasource-$*-$(EMOJI_VERSION).tgz data/emoji/$*-64

bench: $(STAMP)
	$(BIN)/python bench/fmnist_vae.py

clean:
	rm -rf runs .pytest_cache
