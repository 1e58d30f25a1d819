#!/usr/bin/env bash
# The MinAtar experiments of results/minatar/ (issue 7): one run per call, resumed when it was interrupted.
#
#   bash results/minatar/run.sh teacher  Breakout 1             # stage 1: runs/minatar/MinAtar-Breakout-v1__teacher__1__*/
#   bash results/minatar/run.sh student  Breakout 1 both        # stage 2 from that teacher: none|response|feature|both
#   bash results/minatar/run.sh evaluate Breakout 1             # stage 3 over that teacher and its 4 students
#                                                               #   -> results/minatar/cells/Breakout-1/
#   bash results/minatar/run.sh cell     Breakout 1             # all of the above, in order
#   bash results/minatar/run.sh report                          # merge every cell -> results/minatar/report.md
#
# A run whose directory holds eval.json is finished and skipped; one with a checkpoint but no eval.json is resumed
# with --resume (same flags); otherwise a new run starts. Each call appends its output, commit and wall-clock time
# to results/minatar/logs/<Game>-<exp>-<seed>.log. THREADS (default 2) sets torch's CPU threads.
#
# Why cells: one (game, seed) is a teacher and the four students distilled from it. Stage 3 needs them together
# (agreement of each student with its teacher); the cell's summary.json keeps everything the report needs, so the
# cells can be evaluated on different days or machines and `report` merges them without the checkpoints.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
THREADS=${THREADS:-2}
RUNS=runs/minatar
VARIANTS=(none response feature both)

# The CPU-scale preset (README of results/minatar/ explains each choice). Networks: the MinAtar defaults of
# common/networks.py (teacher 32 channels, LSTM 128; student inverted residuals, LSTM 48), hidden states scaled to
# [0, 1] (state_norm, on by default for MinAtar).
budget() {  # budget GAME: the preset's flags for GAME, into BUDGET
    local steps=20000 updates=4000 eval_every=1000
    # The one per-game exception. Asterix rewards 0.6% of transitions (Breakout 5%): a teacher at the preset stays
    # at random play's level, one at twice the data and updates leaves it after 6,000 updates (README, Calibration).
    if [[ $1 == Asterix ]]; then steps=40000 updates=8000 eval_every=2000; fi
    BUDGET=(--total-env-steps "$steps" --random-transitions 2000 --train-updates "$updates" --extra-updates 0
            --batch-size 64 --num-simulations 20 --segment-length 200 --reanalyse-fraction 0 --lr-warmup 200
            --eval-interval "$eval_every" --eval-episodes 16 --final-eval-episodes 32 --checkpoint-interval 500)
}
# Stage 3 as the issue asks: 32 episodes (seeds 0..31) per checkpoint, the search the runs trained with.
EVALUATE=(--episodes 32 --num-simulations 20 --threads "$THREADS" --export-onnx --no-progress)

run_dir() {  # the newest run directory of (game, experiment, seed), or nothing
    ls -td "$RUNS/MinAtar-$1-v1__$2__$3__"*/ 2>/dev/null | head -n 1 || true
}

finished_dir() {  # the run directory of (game, experiment, seed) if it finished, else fail
    local dir
    dir=$(run_dir "$@")
    [[ -n "$dir" && -f "$dir/eval.json" ]] || { echo "no finished $2 run for $1 seed $3" >&2; return 1; }
    echo "${dir%/}"
}

logged() {  # logged LOG CMD...: run CMD, appending its output, commit, start time and wall-clock to LOG
    local log=$1 start=$SECONDS
    shift
    mkdir -p results/minatar/logs
    echo "\$ ${*:1:2} ... (git $(git rev-parse --short HEAD), $(date -u +%FT%TZ), $THREADS threads)" >> "$log"
    "$@" 2>&1 | tee -a "$log"
    echo "wall-clock of this call: $((SECONDS - start)) s" | tee -a "$log"
}

launch() {  # launch SCRIPT GAME EXP SEED FLAGS...: new run, resume, or skip when finished
    local script=$1 game=$2 exp=$3 seed=$4
    shift 4
    local dir
    dir=$(run_dir "$game" "$exp" "$seed")
    if [[ -n "$dir" && -f "$dir/eval.json" ]]; then
        echo "finished: $dir"
        return
    fi
    local resume=()
    if [[ -n "$dir" && -n "$(ls "$dir"/*.pt 2>/dev/null)" ]]; then
        resume=(--resume "${dir%/}")
    fi
    budget "$game"
    logged "results/minatar/logs/$game-$exp-$seed.log" "$PY" "$script" --env-id "MinAtar/$game-v1" --seed "$seed" \
        --exp-name "$exp" --run-dir "$RUNS" --threads "$THREADS" --no-progress "${BUDGET[@]}" "$@" "${resume[@]}"
}

teacher() {
    launch 01_pretrain_teacher.py "$1" teacher "$2"
}

student() {  # student GAME SEED VARIANT
    local game=$1 seed=$2 variant=$3 teacher_dir kd
    teacher_dir=$(finished_dir "$game" teacher "$seed")
    case "$variant" in  # the paper's L = L_RL + L_response + L_feature, with terms switched off by weight 0
        none)     kd=(--response-weight 0 --feature-latent-weight 0 --feature-lstm-weight 0) ;;
        response) kd=(--feature-latent-weight 0 --feature-lstm-weight 0) ;;
        feature)  kd=(--response-weight 0) ;;
        both)     kd=() ;;
        *) echo "variant must be none|response|feature|both" >&2; exit 1 ;;
    esac
    launch 02_distill_student.py "$game" "student-$variant" "$seed" --teacher "$teacher_dir/teacher.pt" \
        --teacher-eval-episodes 16 "${kd[@]}"
}

evaluate() {  # evaluate GAME SEED: stage 3 over the cell's five checkpoints -> results/minatar/cells/GAME-SEED/
    local game=$1 seed=$2 ckpts
    ckpts=("$(finished_dir "$game" teacher "$seed")/teacher.pt")
    for v in "${VARIANTS[@]}"; do
        ckpts+=("$(finished_dir "$game" "student-$v" "$seed")/student.pt")
    done
    logged "results/minatar/logs/$game-evaluate-$seed.log" "$PY" 03_evaluate.py --out-dir results/minatar/cells \
        --name "$game-$seed" "${EVALUATE[@]}" --checkpoints "${ckpts[@]}"
}

case "${1:-}" in
    teacher)  teacher "$2" "$3" ;;
    student)  student "$2" "$3" "$4" ;;
    evaluate) evaluate "$2" "$3" ;;
    cell)
        teacher "$2" "$3"
        for v in "${VARIANTS[@]}"; do student "$2" "$3" "$v"; done
        evaluate "$2" "$3"
        ;;
    report)
        "$PY" 03_evaluate.py --out-dir results --name minatar --merge results/minatar/cells/*/summary.json
        ;;
    *)
        sed -n 2,18p "$0"
        exit 1
        ;;
esac
