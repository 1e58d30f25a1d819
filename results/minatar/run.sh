#!/usr/bin/env bash
# The MinAtar experiments of results/minatar/ (issue 7): one run per call, resumed when it was interrupted.
#
#   bash results/minatar/run.sh teacher  Breakout 1             # stage 1: runs/minatar/MinAtar-Breakout-v1__teacher__1__*/
#   bash results/minatar/run.sh student  Breakout 1 both        # stage 2 from that teacher: none|response|feature|both
#   bash results/minatar/run.sh evaluate                        # stage 3 over every finished run -> results/minatar/
#
# A run whose directory holds eval.json is finished and skipped; one with a checkpoint but no eval.json is resumed
# with --resume (same flags); otherwise a new run starts. Each call appends its output, commit and wall-clock time
# to results/minatar/logs/<Game>-<exp>-<seed>.log. THREADS (default 1) sets torch's CPU threads of the run
# (the results were made with two runs side by side at 1 thread each on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
THREADS=${THREADS:-1}
RUNS=runs/minatar

# The CPU-scale preset (README of results/minatar/ explains each choice). Networks: the MinAtar defaults of
# common/networks.py (teacher 32 channels, LSTM 128; student inverted residuals, LSTM 48), hidden states scaled to
# [0, 1] (state_norm, on by default for MinAtar).
BUDGET=(--total-env-steps 20000 --random-transitions 2000 --train-updates 4000 --extra-updates 0 --batch-size 64
        --num-simulations 20 --segment-length 200 --reanalyse-fraction 0 --lr-warmup 200
        --eval-interval 1000 --eval-episodes 16 --final-eval-episodes 32 --checkpoint-interval 500)

run_dir() {  # the newest run directory of (game, experiment, seed), or nothing
    ls -td "$RUNS/MinAtar-$1-v1__$2__$3__"*/ 2>/dev/null | head -n 1 || true
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
    local start=$SECONDS log="results/minatar/logs/$game-$exp-$seed.log"
    mkdir -p results/minatar/logs
    echo "\$ $PY $script ... (git $(git rev-parse --short HEAD), $(date -u +%FT%TZ))" >> "$log"
    "$PY" "$script" --env-id "MinAtar/$game-v1" --seed "$seed" --exp-name "$exp" --run-dir "$RUNS" \
        --threads "$THREADS" --no-progress "${BUDGET[@]}" "$@" "${resume[@]}" 2>&1 | tee -a "$log"
    echo "wall-clock of this call: $((SECONDS - start)) s" | tee -a "$log"
}

case "${1:-}" in
    teacher)
        launch 01_pretrain_teacher.py "$2" teacher "$3"
        ;;
    student)
        game=$2 seed=$3 variant=$4
        teacher=$(run_dir "$game" teacher "$seed")
        [[ -n "$teacher" && -f "$teacher/eval.json" ]] || { echo "no finished teacher for $game seed $seed" >&2; exit 1; }
        case "$variant" in  # the paper's L = L_RL + L_response + L_feature, with terms switched off by weight 0
            none)     kd=(--response-weight 0 --feature-latent-weight 0 --feature-lstm-weight 0) ;;
            response) kd=(--feature-latent-weight 0 --feature-lstm-weight 0) ;;
            feature)  kd=(--response-weight 0) ;;
            both)     kd=() ;;
            *) echo "variant must be none|response|feature|both" >&2; exit 1 ;;
        esac
        launch 02_distill_student.py "$game" "student-$variant" "$seed" --teacher "${teacher}teacher.pt" \
            --teacher-eval-episodes 16 "${kd[@]}"
        ;;
    evaluate)
        mapfile -t ckpts < <(ls "$RUNS"/*/eval.json | xargs -n 1 dirname)
        "$PY" 03_evaluate.py --name minatar --episodes 32 --num-simulations 20 --export-onnx --checkpoints "${ckpts[@]}"
        ;;
    *)
        sed -n 2,10p "$0"
        exit 1
        ;;
esac
