#!/usr/bin/env bash
# The MinAtar experiments of results/minatar/ (issue 7): one run per call, resumed when it was interrupted.
#
#   bash results/minatar/run.sh teacher  Breakout 1             # stage 1: runs/minatar/MinAtar-Breakout-v1__teacher__1__*/
#   bash results/minatar/run.sh student  Breakout 1 both        # stage 2 from that teacher: none|response|feature|both
#   bash results/minatar/run.sh evaluate Breakout 1             # stage 3 over that teacher and its 4 students
#                                                               #   -> results/minatar/cells/Breakout-1/
#   bash results/minatar/run.sh cell     Breakout 1             # all of the above, in order
#   bash results/minatar/run.sh report                          # merge every cell -> results/minatar/report.md
#   bash results/minatar/run.sh atari                           # the Atari sanity run (Breakout, seed 1, ~1 h)
#   bash results/minatar/run.sh evaluate-atari                  #   -> results/minatar/atari-Breakout/
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

# The Atari sanity run: stage 1 on ALE Breakout at the largest budget that fits in about an hour of this 2-core
# CPU, far below Atari 100k's (100,000 agent steps, 120,000 updates of batch 256). Episodes of evaluation are capped
# at 3,000 agent steps, the cap of a training episode (a policy that never serves the ball would otherwise play
# 27,000 steps). Stage 3: 16 episodes, the training search, no robustness re-evaluations (CPU time).
ATARI_RUNS=runs/atari
ATARI_BUDGET=(--total-env-steps 8000 --random-transitions 2000 --train-updates 1000 --extra-updates 0
              --batch-size 64 --num-simulations 20 --segment-length 200 --reanalyse-fraction 0 --lr-warmup 100
              --eval-interval 250 --eval-episodes 4 --final-eval-episodes 8 --eval-max-steps 3000
              --checkpoint-interval 100)
ATARI_EVALUATE=(--episodes 16 --num-simulations 20 --max-steps 3000 --no-robustness --threads "$THREADS" --export-onnx
                --no-progress)

run_dir() {  # the newest run directory of (game, experiment, seed), or nothing
    newest "$RUNS/MinAtar-$1-v1__$2__$3__"
}

newest() {  # newest PREFIX: the newest directory PREFIX*/, or nothing
    ls -td "$1"*/ 2>/dev/null | head -n 1 || true
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

resume_or_skip() {  # resume_or_skip DIR: fail (skip) if the run in DIR finished, else the --resume flags it needs
    local dir=$1
    if [[ -n "$dir" && -f "$dir/eval.json" ]]; then
        echo "finished: $dir"
        return 1
    fi
    if [[ -n "$dir" && -n "$(ls "$dir"/*.pt 2>/dev/null)" ]]; then
        echo "--resume ${dir%/}"
    fi
}

launch() {  # launch SCRIPT GAME EXP SEED FLAGS...: new run, resume, or skip when finished
    local script=$1 game=$2 exp=$3 seed=$4
    shift 4
    local resume
    resume=$(resume_or_skip "$(run_dir "$game" "$exp" "$seed")") || { echo "$resume"; return; }
    budget "$game"
    # shellcheck disable=SC2086  # $resume: nothing, or the two words --resume DIR
    logged "results/minatar/logs/$game-$exp-$seed.log" "$PY" "$script" --env-id "MinAtar/$game-v1" --seed "$seed" \
        --exp-name "$exp" --run-dir "$RUNS" --threads "$THREADS" --no-progress "${BUDGET[@]}" "$@" $resume
}

atari() {  # the Atari sanity run -> runs/atari/Breakout__teacher__1__*/
    local resume
    resume=$(resume_or_skip "$(newest "$ATARI_RUNS/Breakout__teacher__1__")") || { echo "$resume"; return; }
    # shellcheck disable=SC2086
    logged results/minatar/logs/atari-Breakout-teacher-1.log "$PY" 01_pretrain_teacher.py --env-id Breakout \
        --seed 1 --exp-name teacher --run-dir "$ATARI_RUNS" --threads "$THREADS" --no-progress "${ATARI_BUDGET[@]}" \
        $resume
}

evaluate_atari() {  # stage 3 on the Atari sanity run -> results/minatar/atari-Breakout/
    local dir
    dir=$(newest "$ATARI_RUNS/Breakout__teacher__1__")
    [[ -n "$dir" && -f "$dir/eval.json" ]] || { echo "no finished Atari run in $ATARI_RUNS" >&2; return 1; }
    logged results/minatar/logs/atari-Breakout-evaluate-1.log "$PY" 03_evaluate.py --out-dir results/minatar \
        --name atari-Breakout "${ATARI_EVALUATE[@]}" --checkpoints "${dir%/}/teacher.pt"
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
    atari)          atari ;;
    evaluate-atari) evaluate_atari ;;
    *)
        sed -n 2,19p "$0"
        exit 1
        ;;
esac
