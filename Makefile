# PLAsTiCC-2018 submission kit. `make help` lists the targets; `make demo` runs everything on a
# simulated competition; `make test` runs the tests. Stages are file targets: make redoes only what is stale.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# No .DELETE_ON_ERROR: every kit command writes its outputs atomically (temporary name, then rename), so after a
# failure or an interrupt a finished output is whole and a partial one absent. Make must not delete the finished
# ones the kit says it kept: the targets the kit writes are .PRECIOUS (listed after their rules).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

# --- settings (override on the command line: make features DATA=data/plasticc-2018) ----------------
COMPETITION ?= plasticc-2018
DATA ?= data/sim-demo
SCHEDULER ?=
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
SIM_TRAIN ?= 2000
SIM_TEST ?= 10000
SEED ?= 42
# The simulated survey's cadence and depth: lsst (PLAsTiCC's) or wide-fast (a source survey to pretrain on).
SIM_SURVEY ?= lsst
MODEL ?= $(if $(filter-out lgbm prior,$(TRAINED)),blend,lgbm)
# class-99 method of the submission (product, constant, second, third, avocado; empty: the kit's default)
CLASS99 ?=
LSTM_ARGS ?=
# The CNN trains on 3 redshift-augmented copies of each training object (make augment) by default: measured on the
# acceptance competition, OOF 0.3463 -> 0.3210 and test 0.7199 -> 0.6894. CNN_ARGS= (empty) trains without them.
CNN_ARGS ?= --augmented-copies 3 --epochs 20 --patience 5
# Pretraining (make pretrain) and fine-tuning (make train-lstm_ft): the encoder fine-tuning starts from, the options.
# SOURCE=data/sim-...: pretrain on another competition folder's test light curves (another simulated survey).
SOURCE ?=
PRETRAIN_DIR = $(MODELS)/pretrain$(if $(SOURCE),-$(notdir $(abspath $(SOURCE))))
PRETRAINED ?= $(PRETRAIN_DIR)/encoder.keras
PRETRAIN_ARGS ?=
LSTM_FT_ARGS ?=
TRANSFER_ARGS ?=
# The networks' dense side (LSTM, CNN, fine-tuned LSTM): aggregate,gp (the default) or aggregate.
LSTM_FEATURES ?= aggregate,gp
# LightGBM: feature sets (aggregate, gp) and whether it trains on the redshift-augmented copies (1) or not (0).
LGBM_FEATURES ?= aggregate,gp
AUGMENT ?= 1
REWEIGHT ?= 1
LGBM_ARGS ?=
AUGMENT_COPIES ?= 40
GALACTIC_COPIES ?= 10
KERNEL_DIR ?= kernels/lstm
KERNEL_MODELS ?= lstm
KERNEL_FULL ?=
KAGGLE_USER ?=
KERNEL_ARGS ?=
BENCH_ROWS ?= 20000000
BENCH_ARGS ?=

BUILD_ROOT ?= build
MODELS_ROOT ?= models
SUBMISSIONS ?= submissions
REPORTS_ROOT ?= reports

NAME := $(notdir $(abspath $(DATA)))
BUILD := $(BUILD_ROOT)/$(NAME)
MODELS := $(MODELS_ROOT)/$(NAME)
ARGS := --data $(DATA) --workers $(WORKERS) --seed $(SEED) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) \
	--build-root $(BUILD_ROOT) --models-root $(MODELS_ROOT) --submissions-dir $(SUBMISSIONS) --reports-root $(REPORTS_ROOT)
KIT := $(PY) -m kit
src = $(firstword $(wildcard $(DATA)/$(1) $(DATA)/$(1).gz) $(DATA)/$(1))
TRAIN_FILES := $(call src,training_set.csv) $(call src,training_set_metadata.csv)
TEST_FILES := $(call src,test_set.csv) $(call src,test_set_metadata.csv)
KIT_SOURCES := $(shell find kit -name '*.py' 2>/dev/null)
CLASS99_DEFAULT := constant
SUBMISSION := $(SUBMISSIONS)/$(NAME)-$(MODEL)$(if $(filter-out $(CLASS99_DEFAULT),$(CLASS99)),-$(CLASS99)).csv.gz

# --- demo: a simulated competition served by the local stand-in Kaggle server ---------------------
DEMO_SOURCE := data/sim-demo-kaggle
DEMO_PORT ?= 8765
DEMO_STATE := build/standin
STANDIN := KAGGLE_CONFIG_DIR=$(abspath $(DEMO_STATE))/config KIT_KAGGLE_ENDPOINT=http://127.0.0.1:$(DEMO_PORT)

.PHONY: help
help: ## list the targets
	@echo "PLAsTiCC-2018 kit. Settings: DATA=$(DATA) MODEL=$(MODEL) WORKERS=$(WORKERS) SCHEDULER=$(SCHEDULER)"
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-15s %s\n", $$1, $$2}'
	@echo "  train-<model>   train any model of the registry (kit/models/__init__.py), e.g. make train-prior"

$(STAMP): requirements.txt
	rm -f $(VENV)/.installed-*
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

.PHONY: setup
setup: $(STAMP) ## create or reuse .venv with the pinned requirements

# --- data ------------------------------------------------------------------------------------------
.PHONY: simulate download check-data import-zenodo
simulate: $(STAMP) ## simulate a competition into DATA (SIM_TRAIN, SIM_TEST, SEED, SIM_SURVEY=lsst|wide-fast)
	$(KIT) simulate $(ARGS) --out $(DATA) --train $(SIM_TRAIN) --test $(SIM_TEST) --survey $(SIM_SURVEY)

download: $(STAMP) ## download and unpack COMPETITION into data/<competition> with the kaggle client
	$(KIT) download --competition $(COMPETITION) $(if $(filter command line,$(origin DATA)),--out $(DATA))

import-zenodo: $(STAMP) ## import the unblinded Zenodo release (ZENODO=folder) into DATA
	$(KIT) import-zenodo $(ARGS) --source $(ZENODO) --out $(DATA)

check-data: $(STAMP) ## check the competition folder's files and headers
	$(KIT) check-data $(ARGS)

# Simulated competitions (folders named sim-*) are made on demand.
data/sim-%/test_set_metadata.csv data/sim-%/training_set.csv data/sim-%/test_set.csv data/sim-%/training_set_metadata.csv &: | $(STAMP)
	$(KIT) simulate --data data/sim-$* --out data/sim-$* --train $(SIM_TRAIN) --test $(SIM_TEST) --seed $(SEED) --survey $(SIM_SURVEY)

# --- features and sequences --------------------------------------------------------------------------
$(BUILD)/features_train.parquet $(BUILD)/features_test.parquet &: $(TRAIN_FILES) $(TEST_FILES) | $(STAMP)
	$(KIT) features $(ARGS)

$(BUILD)/sequences_train/.done $(BUILD)/sequences_test/.done &: $(TRAIN_FILES) $(TEST_FILES) | $(STAMP)
	$(KIT) sequences $(ARGS)

$(BUILD)/gp_features_train.parquet $(BUILD)/gp_features_test.parquet &: $(TRAIN_FILES) $(TEST_FILES) | $(STAMP)
	$(KIT) features $(ARGS) --set gp

$(BUILD)/features_augment.parquet $(BUILD)/gp_features_augment.parquet &: $(TRAIN_FILES) \
		$(call src,test_set_metadata.csv) | $(STAMP)
	$(KIT) augment $(ARGS) --copies $(AUGMENT_COPIES) --galactic-copies $(GALACTIC_COPIES)

.PHONY: features gp-features augment sequences
features: $(BUILD)/features_train.parquet ## aggregate features of train and test (resumable, parallel, SCHEDULER=)
gp-features: $(BUILD)/gp_features_train.parquet ## Gaussian-process light-curve features of train and test
augment: $(BUILD)/features_augment.parquet ## redshift-augmented training copies with features (AUGMENT_COPIES=)
sequences: $(BUILD)/sequences_train/.done ## ragged passband sequences of train and test for the LSTM
.PHONY: adversarial
adversarial: $(BUILD)/features_train.parquet ## AUC of a train-vs-test classifier on the features (+ photo-z weights, + augmented copies)
	$(KIT) adversarial $(ARGS)

# --- models ----------------------------------------------------------------------------------------
# Every model of the registry (kit/models/__init__.py) trains with `kit train-<name>` into models/<name>/oof.parquet
# and predicts with `kit predict --model <name>` into models/<name>/test.parquet (the pattern rules below). A model
# reads the aggregate features unless <name>_TRAIN / <name>_TEST name its inputs; <name>_ARGS are its options.
TRAINED = $(filter-out blend,$(patsubst $(MODELS)/%/oof.parquet,%,$(wildcard $(MODELS)/*/oof.parquet)))
train_inputs = $(or $($(1)_TRAIN),$(BUILD)/features_train.parquet)
test_inputs = $(or $($(1)_TEST),$(BUILD)/features_test.parquet)
# Models fetched by `make kernel-output` carry a kernel.json: they are authoritative, so their files have
# no local prerequisites and make never retrains or repredicts them from local features or sequences.
# Remove models/<name>/<model>/kernel.json to train that model locally again.
FROM_KERNEL := $(patsubst $(MODELS)/%/kernel.json,%,$(wildcard $(MODELS)/*/kernel.json))
unless_kernel = $(if $(filter $(1),$(FROM_KERNEL)),,$(2))

$(MODELS)/folds.csv: $(call src,training_set_metadata.csv) | $(STAMP)
	$(KIT) folds $(ARGS)

# The feature files LightGBM reads, from LGBM_FEATURES and AUGMENT.
feature_files = $(BUILD)/features_$(1).parquet $(if $(findstring gp,$(or $(2),$(LGBM_FEATURES))),$(BUILD)/gp_features_$(1).parquet)
LGBM_TRAIN_FILES := $(call feature_files,train) $(if $(filter 1,$(AUGMENT)),$(call feature_files,augment))

lgbm_TRAIN = $(LGBM_TRAIN_FILES)
lgbm_TEST = $(call feature_files,test)
lgbm_ARGS = --features $(LGBM_FEATURES) $(if $(filter 1,$(AUGMENT)),--augmented) \
	$(if $(filter 1,$(REWEIGHT)),--reweight) $(LGBM_ARGS)
NET_FEATURE_ARGS = $(if $(findstring gp,$(LSTM_FEATURES)),,--features aggregate)
# A network given --augmented-copies also needs the copies (make augment).
copies_of = $(if $(findstring --augmented-copies,$(1)),$(call feature_files,augment,$(LSTM_FEATURES)))
NET_TRAIN = $(BUILD)/sequences_train/.done $(call feature_files,train,$(LSTM_FEATURES))
lstm_TRAIN = $(NET_TRAIN) $(call copies_of,$(LSTM_ARGS))
lstm_TEST = $(BUILD)/sequences_test/.done $(call feature_files,test,$(LSTM_FEATURES))
lstm_ARGS = $(NET_FEATURE_ARGS) $(LSTM_ARGS)
cnn_TRAIN = $(NET_TRAIN) $(call copies_of,$(CNN_ARGS))
cnn_TEST = $(lstm_TEST)
cnn_ARGS = $(NET_FEATURE_ARGS) $(CNN_ARGS)
lstm_ft_TRAIN = $(NET_TRAIN) $(call copies_of,$(LSTM_ARGS) $(LSTM_FT_ARGS)) $(PRETRAINED)
lstm_ft_TEST = $(lstm_TEST)
lstm_ft_ARGS = $(lstm_ARGS) --pretrained $(PRETRAINED) $(LSTM_FT_ARGS)
prior_TRAIN = $(call src,training_set_metadata.csv)

.SECONDEXPANSION:
$(MODELS)/%/oof.parquet: $$(call unless_kernel,$$*,$$(call train_inputs,$$*) $(MODELS)/folds.csv)
	$(KIT) train-$* $(ARGS) $($*_ARGS)

$(MODELS)/%/test.parquet: $$(call unless_kernel,$$*,$(MODELS)/$$*/oof.parquet $$(call test_inputs,$$*))
	$(KIT) predict $(ARGS) --model $*

# the class prior predicts without training
$(MODELS)/prior/test.parquet: $(TRAIN_FILES) $(call src,test_set_metadata.csv) | $(STAMP)
	$(KIT) predict $(ARGS) --model prior

# The blend: LightGBM, the LSTM and every other trained model (BLEND_MODELS= to choose).
BLEND_MODELS ?= lgbm lstm $(filter-out lgbm lstm,$(TRAINED))
$(MODELS)/blend/test.parquet: $(foreach m,$(BLEND_MODELS),$(MODELS)/$(m)/test.parquet)
	$(KIT) blend $(ARGS) --models $(BLEND_MODELS)

.PHONY: folds train-lgbm train-lstm predict blend
folds: $(MODELS)/folds.csv ## the stratified fold assignment every model shares
train-lgbm: $(MODELS)/lgbm/oof.parquet ## train LightGBM (5 folds, OOF score; LGBM_FEATURES=, AUGMENT=0|1)
train-lstm: $(MODELS)/lstm/oof.parquet ## train the sequence network (LSTM_ARGS="--preset seed|demo", LSTM_FEATURES=)
train-%: $(MODELS)/%/oof.parquet
	@:
predict: $(MODELS)/lgbm/test.parquet ## predict the test set with LightGBM and every other trained model
	$(if $(filter-out lgbm,$(TRAINED)),$(MAKE) $(patsubst %,$(MODELS)/%/test.parquet,$(filter-out lgbm,$(TRAINED))))
blend: $(MODELS)/blend/test.parquet ## blend LightGBM, the LSTM and any other trained model (BLEND_MODELS=)

# Self-supervised pretraining of the LSTM's encoder on the test light curves (SOURCE=: another folder's; it
# builds that folder's sequences first), and the transfer study: from scratch vs pretrained, by share of labels.
SOURCE_SEQUENCES = $(if $(SOURCE),$(BUILD_ROOT)/$(notdir $(abspath $(SOURCE)))/sequences_test/.done,$(BUILD)/sequences_test/.done)
$(BUILD_ROOT)/%/sequences_test/.done: | $(STAMP)
	$(MAKE) --no-print-directory sequences DATA=$(SOURCE)
$(PRETRAIN_DIR)/encoder.keras: $(SOURCE_SEQUENCES)
	$(KIT) pretrain $(ARGS) $(if $(SOURCE),--source $(SOURCE)) $(PRETRAIN_ARGS)

.PHONY: pretrain transfer-study
pretrain: $(PRETRAIN_DIR)/encoder.keras ## pretrain the LSTM encoder on unlabelled test light curves (PRETRAIN_ARGS=, SOURCE=)
transfer-study: $(PRETRAINED) $(lstm_TRAIN) $(MODELS)/folds.csv ## LSTM from scratch vs pretrained at 5/25/100% of the labels (TRANSFER_ARGS=)
	$(KIT) transfer-study $(ARGS) --pretrained $(PRETRAINED) $(NET_FEATURE_ARGS) $(LSTM_ARGS) $(TRANSFER_ARGS)

# --- submission --------------------------------------------------------------------------------------
$(SUBMISSION): $(MODELS)/$(MODEL)/test.parquet $(call src,test_set_metadata.csv)
	$(KIT) submission $(ARGS) --model $(MODEL) $(if $(CLASS99),--class99 $(CLASS99))

# FILE=path: validate, score or submit that file as it is; without it, the default submission (rebuilt if stale).
CHECKED := $(or $(FILE),$(SUBMISSION))
CHECKED_DEPS := $(if $(FILE),$(STAMP),$(SUBMISSION))

.PHONY: submission validate score class99-study
submission: $(SUBMISSION) ## add class 99 (CLASS99=method) and write submissions/<name>-<model>[-<method>].csv.gz
validate: $(CHECKED_DEPS) ## check the submission (or FILE=path) against the test metadata
	$(KIT) validate $(ARGS) --file '$(CHECKED)'
score: $(CHECKED_DEPS) ## score the submission (or FILE=path) against the truth file, if there is one
	$(KIT) score $(ARGS) --file '$(CHECKED)'
class99-study: $(MODELS)/$(MODEL)/test.parquet $(call src,test_set_metadata.csv) ## score every class-99 method on MODEL's test predictions against the truth
	$(KIT) class99-study $(ARGS) --model $(MODEL)

# Outputs the kit writes atomically: kept whole when a later command fails or make is interrupted.
.PRECIOUS: $(BUILD)/features_train.parquet $(BUILD)/features_test.parquet $(BUILD)/sequences_train/.done \
	$(BUILD)/gp_features_train.parquet $(BUILD)/gp_features_test.parquet $(BUILD)/features_augment.parquet \
	$(BUILD)/gp_features_augment.parquet \
	$(BUILD)/sequences_test/.done $(MODELS)/folds.csv $(MODELS)/%/oof.parquet $(MODELS)/%/test.parquet \
	$(MODELS)/prior/test.parquet $(MODELS)/blend/test.parquet $(SUBMISSION) data/sim-%/test_set_metadata.csv data/sim-%/training_set.csv \
	data/sim-%/test_set.csv data/sim-%/training_set_metadata.csv

# --- Kaggle ----------------------------------------------------------------------------------------
.PHONY: submit submissions leaderboard kernel-build kernel-push kernel-status kernel-output kernel-local
submit: $(CHECKED_DEPS) ## rebuild what is stale (or take FILE=path), validate, upload, record in the ledger
	$(KIT) submit $(ARGS) --competition $(COMPETITION) --file '$(CHECKED)'
submissions: $(STAMP) ## our submissions with status and public/private scores (updates the ledger)
	$(KIT) submissions $(ARGS) --competition $(COMPETITION)
leaderboard: $(STAMP) ## the whole leaderboard and where our best scores rank (closed: would have ranked)
	$(KIT) leaderboard $(ARGS) --competition $(COMPETITION)
ifneq ($(filter kernel-output,$(MAKECMDGOALS)),$(MAKECMDGOALS))
ifneq ($(filter kernel-output,$(MAKECMDGOALS)),)
$(error run `make kernel-output` on its own: make learns which models came from the kernel when it starts)
endif
endif
KERNEL_OPTS = --kernel-dir $(KERNEL_DIR) --models $(KERNEL_MODELS) $(if $(KAGGLE_USER),--user $(KAGGLE_USER))
kernel-build: $(STAMP) ## write the GPU kernel (trains KERNEL_MODELS, predicts the test set) into KERNEL_DIR
	$(KIT) kernel build $(ARGS) $(KERNEL_OPTS) --competition $(COMPETITION) $(KERNEL_ARGS)
kernel-push: $(STAMP) ## build and push the GPU kernel to Kaggle (KAGGLE_USER= if no kaggle.json)
	$(KIT) kernel push $(ARGS) $(KERNEL_OPTS) --competition $(COMPETITION) $(KERNEL_ARGS)
kernel-status: $(STAMP) ## status of the pushed kernel
	$(KIT) kernel status $(ARGS) $(KERNEL_OPTS)
kernel-output: $(STAMP) ## fetch the kernel's models + test predictions into models/<name>; make keeps them
	$(KIT) kernel output $(ARGS) $(KERNEL_OPTS)
kernel-local: $(TRAIN_FILES) $(TEST_FILES) | $(STAMP) ## run the kernel here on a sample of DATA (smoke, minutes); KERNEL_FULL=1: all of it
	$(KIT) kernel local $(ARGS) $(KERNEL_OPTS) $(if $(KERNEL_FULL),--full) $(KERNEL_ARGS)

# --- demo, reports, benchmark ----------------------------------------------------------------------
.PHONY: demo
demo: $(STAMP) ## simulate a competition, serve it on a local stand-in Kaggle, run everything, submit
	$(MAKE) --no-print-directory data/sim-demo-kaggle/test_set.csv
	bash scripts/demo.sh

.PHONY: report bench
report: $(STAMP) ## write reports/<name>/index.html with figures of models, errors and light curves
	$(KIT) report $(ARGS)
bench: $(STAMP) ## time the LightGBM path (BENCH_ROWS), GP features and dmdt images on a simulated test set
	$(KIT) bench $(ARGS) --rows $(BENCH_ROWS) $(BENCH_ARGS)

# --- quality -----------------------------------------------------------------------------------------
.PHONY: test lint clean clean-models
test: $(STAMP) ## run the test suite
	$(PY) -m pytest
lint: $(STAMP) ## ruff
	$(PY) -m ruff check kit tests
clean-models: ## remove models/<name> (fold assignment included)
	rm -rf $(MODELS)
clean: ## remove build/, models/, reports/ and generated submissions (keeps data/ and .venv)
	rm -rf $(BUILD_ROOT) $(MODELS_ROOT) $(REPORTS_ROOT) $(SUBMISSIONS)/*.csv.gz
