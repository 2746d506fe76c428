# tianchi-baselines: every target that needs Python depends on the virtual environment, which it creates.
# `make help` lists the targets.

SHELL := bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

COMP      ?= news_text_cls## competition: news_text_cls | street_char_rec | any folder of competitions/
# a contest may set its own defaults (e.g. MODEL ?= cnn) in competitions/<comp>/defaults.mk
-include competitions/$(COMP)/defaults.mk
MODEL     ?= tfidf## model name (see `make models`)
FOLDS     ?= 5## number of folds
FOLD      ?= 0## one fold for `make fold`
SEED      ?= 42## seed of the folds
DATA_DIR  ?= data/$(COMP)## the contest's files
RUN       ?= runs/$(COMP)/$(MODEL)## run directory
TRIALS    ?= 20## Optuna trials for `make tune`
STORAGE   ?=## Optuna storage: journal file or database URL (default runs/optuna.journal)
SET       ?=## extra model params, space separated key=value
CONFIG    ?=## YAML of model params (e.g. best params from tune)
NPROC     ?= 1## processes (GPUs) for DDP through torchrun
GPUS      ?=## GPU ids for parallel folds: `make -j5 folds GPUS="0 1 2 3 4"`
RUNS      ?=## run directories for `make blend`
CLASS_WEIGHTS ?=## non-empty: `make blend` also fits per-class weights (macro-F1)
SIZE      ?= small## BERT size for `make pretrain` and MODEL=bert: mini | small | base
PRETRAINED ?= runs/news_text_cls/pretrained-$(SIZE)## pretrained BERT directory for MODEL=bert
TEST_FILE ?=## test file for `make predict` (default test_a.csv / mchar_test_a)
OUT       ?=## submission path for `make predict` (default RUN/predict.csv)
SUB       ?=## submission file for `make lb-score` (one that train, blend, full or predict wrote)
SCORE     ?=## its public leaderboard score, for `make lb-score`
BOARD     ?= a## leaderboard of that score for `make lb-score`: a | b
PORT      ?= 8080## port of `make dashboard` (on 127.0.0.1)
THRESHOLD ?= 0.95## confidence a test row needs for `make pseudo` (street: the whole string's probability)
NAME      ?=## `make new-competition`: the new contest's name, e.g. my_contest
TASK      ?=## `make new-competition`: text | image | tabular
METRIC    ?=## `make new-competition`: a key of common.metrics.METRICS (default accuracy)

COMPS      := $(sort $(patsubst competitions/%/__main__.py,%,$(wildcard competitions/*/__main__.py)))
ifeq ($(filter $(COMP),$(COMPS)),)
$(error unknown COMP=$(COMP); expected one of: $(COMPS))
endif

SET_ARGS    = $(foreach s,$(SET),--set $(s))
CONFIG_ARG  = $(if $(CONFIG),--config $(CONFIG))
LAUNCH      = $(if $(filter-out 1,$(NPROC)),$(PY) -m torch.distributed.run --standalone --nproc_per_node $(NPROC),$(PY))
CLI         = -m competitions.$(COMP)
CLI_NEWS    = -m competitions.news_text_cls
# the contest a path names (submissions/<comp>/..., runs/<comp>/...) unless COMP is given: `make lb-score`, `make pseudo`
comp_of     = $(if $(filter command line,$(origin COMP)),$(COMP),$(or $(firstword $(filter $(COMPS),$(subst /, ,$(1)))),$(COMP)))
# MODEL=bert on news needs a pretrained directory: make pretrains it first (pretrain.json marks it complete)
BERT_DEPS   = $(if $(and $(filter news_text_cls,$(COMP)),$(filter bert,$(MODEL))),$(PRETRAINED)/pretrain.json)
BERT_SET    = $(if $(BERT_DEPS),--set pretrained=$(PRETRAINED))
TRAIN_ARGS  = --model $(MODEL) --data-dir $(DATA_DIR) --run-dir $(RUN) --folds $(FOLDS) --seed $(SEED) $(CONFIG_ARG) $(BERT_SET) $(SET_ARGS)
FOLD_IDS    = $(shell seq 0 $$(($(FOLDS) - 1)))

.PHONY: help venv demo test test-all test-gpu lint format models data train fold folds full submit predict tune blend \
        leaderboard lb-score pseudo dashboard adversarial report pretrain new-competition bench clean

help: ## list the targets and variables
	@echo "usage: make TARGET [VAR=value ...]"; echo; echo "targets:"
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## (.*)/  \1\t\2/' | expand -t 19
	@echo; echo "variables (default):"
	@grep -E '^[A-Z_]+ +\?=.*## ' $(MAKEFILE_LIST) | sed -E 's/^([A-Z_]+) +\?= *([^#]*)## (.*)/  \1\t\3 (\2)/' | expand -t 16

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create the virtual environment and install the project (automatic for every target)

demo: $(STAMP) ## generated data for both contests, quick baselines, blend, leaderboard, executed notebook
	$(PY) -m competitions.demo

test: $(STAMP) ## lint and the fast test set (what CI runs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -m "not slow" -q

test-all: $(STAMP) ## lint and every test, slow ones included
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q

test-gpu: $(STAMP) ## the GPU tier (bf16 folds, compile, NCCL, benches); skipped cleanly without CUDA
	$(VENV)/bin/pytest -m gpu -q -rs

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff format and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

models: $(STAMP) ## the registered models of COMP
	$(PY) $(CLI) models --params

data: $(STAMP) ## generate demo data for COMP into DATA_DIR (the contest's exact file formats)
	$(PY) $(CLI) synth --out $(DATA_DIR)

train: $(STAMP) $(BERT_DEPS) ## train all folds of MODEL on COMP (complete folds are skipped), write OOF, CV score, submission
	$(LAUNCH) $(CLI) train $(TRAIN_ARGS) --fold all

fold: $(STAMP) $(BERT_DEPS) ## train one fold: FOLD=k
	$(LAUNCH) $(CLI) train $(TRAIN_ARGS) --fold $(FOLD)

folds: $(addprefix fold-,$(FOLD_IDS)) ## every fold as its own job (`make -j5 folds GPUS="0 1 2 3 4"`), then merge
	$(PY) $(CLI) train $(TRAIN_ARGS) --fold all

fold-%: $(STAMP) $(BERT_DEPS)
	@gpus=($(GPUS)); if [ $${#gpus[@]} -gt 0 ]; then export CUDA_VISIBLE_DEVICES=$${gpus[$$(( $* % $${#gpus[@]} ))]}; fi; \
	echo "fold $*$${CUDA_VISIBLE_DEVICES:+ on GPU $$CUDA_VISIBLE_DEVICES}"; \
	$(PY) $(CLI) train $(TRAIN_ARGS) --fold $* --quiet

full: $(STAMP) $(BERT_DEPS) ## refit MODEL on every labelled row (no CV) and write RUN/submission-full.csv
	$(LAUNCH) $(CLI) train $(TRAIN_ARGS) --fold full

submit: $(STAMP) ## merge the complete folds of RUN and re-write its submission
	$(PY) $(CLI) train $(TRAIN_ARGS) --fold all

predict: $(STAMP) ## submission for a test file from RUN's fold models: OUT=file.csv [TEST_FILE=...]
	$(PY) $(CLI) predict --run-dir $(RUN) --data-dir $(DATA_DIR) $(if $(TEST_FILE),--test-file $(TEST_FILE)) --out $(or $(OUT),$(RUN)/predict.csv) --force

tune: $(STAMP) $(BERT_DEPS) ## Optuna study over MODEL's search space: TRIALS=n [STORAGE=url]
	$(PY) $(CLI) tune --model $(MODEL) --data-dir $(DATA_DIR) --trials $(TRIALS) --folds $(FOLDS) --seed $(SEED) \
		$(if $(STORAGE),--storage $(STORAGE)) $(CONFIG_ARG) $(BERT_SET) $(SET_ARGS)

dashboard: $(STAMP) ## optuna-dashboard over the tuning storage on http://127.0.0.1:PORT [STORAGE=url] (Ctrl-C stops it)
	$(PY) -m common.dashboard $(if $(STORAGE),--storage $(STORAGE)) --port $(PORT)

blend: $(STAMP) ## blend runs of COMP: RUNS="runs/x/a runs/x/b"
	$(PY) $(CLI) blend --data-dir $(DATA_DIR) --runs $(RUNS) $(if $(CLASS_WEIGHTS),--class-weights)

pseudo: $(STAMP) ## train RUN again with its confident test predictions as extra training rows -> RUN-pseudo [THRESHOLD=0.95]
	$(PY) -m competitions.$(call comp_of,$(RUN)) pseudo --run-dir $(RUN) --threshold $(THRESHOLD) \
		$(if $(filter command line,$(origin DATA_DIR)),--data-dir $(DATA_DIR))

leaderboard: $(STAMP) ## every run under runs/ by CV score (COMP= to filter)
	$(PY) -m common.leaderboard $(if $(filter command line,$(origin COMP)),--competition $(COMP))

lb-score: $(STAMP) ## record the public score of a submission: SUB=submissions/<comp>/<file>.csv SCORE=0.9412 [BOARD=b]
	@test -n "$(SUB)" -a -n "$(SCORE)" || { echo "usage: make lb-score SUB=submissions/<comp>/<file>.csv SCORE=<public score> [BOARD=a|b]" >&2; exit 2; }
	$(PY) -m competitions.$(call comp_of,$(SUB)) lb-score --sub $(SUB) --score $(SCORE) --board $(BOARD)

adversarial: $(STAMP) ## adversarial validation of COMP: train-vs-test AUC, separating features -> runs/COMP/adversarial
	$(PY) $(CLI) adversarial --data-dir $(DATA_DIR) --folds $(FOLDS) --seed $(SEED) $(SET_ARGS)

report: $(STAMP) ## execute notebooks/compare_baselines.ipynb on the runs under runs/
	$(PY) -m common.report

pretrain: $(PRETRAINED)/pretrain.json ## MLM-pretrain BERT on the news train+test text: SIZE=mini|small|base

$(PRETRAINED)/pretrain.json: | $(STAMP)
	$(PY) -m competitions.news_text_cls pretrain --size $(SIZE) --out $(PRETRAINED) \
		--data-dir $(if $(filter news_text_cls,$(COMP)),$(DATA_DIR),data/news_text_cls)

new-competition: $(STAMP) ## scaffold competitions/NAME and tests/NAME: NAME=my_contest TASK=text|image|tabular [METRIC=...]
	@test -n "$(NAME)" -a -n "$(TASK)" || { echo "error: make new-competition needs NAME=... and TASK=text|image|tabular" >&2; exit 2; }
	$(PY) -m common.scaffold $(NAME) --task $(TASK) $(if $(METRIC),--metric $(METRIC))

BENCH_DIR := runs/bench
bench: $(STAMP) ## every benchmark in bench/ at a CPU smoke size on generated data (JSON lines; README for full sizes)
	$(PY) $(CLI_NEWS) synth --out $(BENCH_DIR)/news --n-train 2000 --n-test 500
	$(PY) -m competitions.street_char_rec synth --out $(BENCH_DIR)/street --n-train 200 --n-val 60 --n-test 60
	$(PY) bench/news_models.py --data-dir $(BENCH_DIR)/news --methods datawhale_ridge,linearsvc_bigrams,tfidf --folds 3
	$(PY) bench/news_tfidf.py --data-dir $(BENCH_DIR)/news --folds 3
	$(PY) bench/news_throughput.py --device cpu --n-docs 600 --max-len 256 --batch-size 32
	$(PY) bench/news_mlm_throughput.py --size mini --layers 2 --seq-len 128 --batch-size 8 --steps 5 --device cpu --workers 0 --n-docs 400
	$(PY) bench/street_throughput.py --n-images 256 --batch-size 32 --workers 2 --threads 2
	$(PY) bench/street_models.py --data-dir $(BENCH_DIR)/street reference --epochs 1
	$(PY) bench/street_models.py --data-dir $(BENCH_DIR)/street repo --model cnn --set epochs=1
	$(PY) bench/news_bench_data.py --out $(BENCH_DIR)/news_reviews --kind reviews   # "skipped" without the extras

clean: ## remove runs/ and caches (keeps data/ and the venv)
	rm -rf runs .pytest_cache .ruff_cache
