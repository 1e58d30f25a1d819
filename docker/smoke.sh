#!/usr/bin/env bash
# The image's end-to-end check (`make docker-smoke`, by hand, not in CI): stages 1 -> 2 -> 3 on the toy game
# Toy/Catch-v0 on the CPU, with a tiny budget, as the image's user (uid 1000), into runs/ and results/ folders
# mounted from the host. Fails as soon as a stage fails; prints each stage's time.
#   docker/smoke.sh [IMAGE] [DIR]      (defaults: ez-distill, a new folder under /tmp)
# The image must exist (`make docker-smoke` builds it first). DOCKER=... picks the docker command.
set -euo pipefail

image=${1:-ez-distill}
dir=${2:-$(mktemp -d /tmp/ez-distill-docker-smoke.XXXXXX)}
docker=${DOCKER:-docker}

mkdir -p "$dir/runs" "$dir/results"
# the container's user (uid 1000) writes here whatever the host user's id is
chmod a+rwx "$dir/runs" "$dir/results"

# one thread and no GPU: the check is that the image runs the pipeline, not how fast
budget=(--env-id Toy/Catch-v0 --total-env-steps 400 --random-transitions 200 --train-updates 60 --extra-updates 0
        --batch-size 16 --num-simulations 4 --segment-length 20 --channels 16 --lstm-hidden 32
        --reanalyse-fraction 0 --lr-warmup 10 --target-update-interval 20 --eval-interval 0
        --final-eval-episodes 8 --eval-max-steps 200 --checkpoint-interval 30 --device cpu --threads 1 --no-progress)

in_image() {  # in_image CMD...: run CMD in a fresh container with the two folders mounted
    "$docker" run --rm --user 1000:1000 -e OMP_NUM_THREADS=1 \
        -v "$dir/runs:/app/runs" -v "$dir/results:/app/results" "$image" "$@"
}

# what uid 1000 wrote stays removable by any host user, also after a failure
trap 'in_image find /app/runs /app/results -mindepth 1 -exec chmod a+rwX {} + || true' EXIT

stage() {  # stage NAME CMD...: run and time one stage
    local name=$1 start=$SECONDS
    shift
    echo "== $name"
    in_image "$@"
    times+=("$name: $((SECONDS - start)) s")
}

only_run() {  # only_run EXP: the single run directory of experiment EXP (relative to /app)
    local found=("$dir"/runs/Toy-Catch-v0__"$1"__1__*/)
    [ ${#found[@]} -eq 1 ] && [ -d "${found[0]}" ] || { echo "expected one run of '$1' in $dir/runs" >&2; exit 1; }
    echo "runs/$(basename "${found[0]}")"
}

times=()
in_image python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
stage "stage 1 (teacher)" python 01_pretrain_teacher.py "${budget[@]}" --exp-name smoke
teacher=$(only_run smoke)/teacher.pt
stage "stage 2 (student)" python 02_distill_student.py "${budget[@]}" --exp-name smoke-student \
    --teacher "$teacher" --teacher-eval-episodes 4
student=$(only_run smoke-student)/student.pt
stage "stage 3 (evaluate)" python 03_evaluate.py --checkpoints "$teacher" "$student" --name smoke \
    --episodes 4 --num-simulations 4 --max-steps 200 --latency-repeats 2 --agreement-states 64 \
    --robustness-episodes 2 --device cpu --threads 1 --no-progress
test -s "$dir/results/smoke/report.md" || { echo "no results/smoke/report.md" >&2; exit 1; }

printf '%s\n' "${times[@]}"
echo "docker smoke passed: $dir/results/smoke/report.md"
