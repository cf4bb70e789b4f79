#!/usr/bin/env bash
# The small experiment (`roboscape experiment --preset small`) from scratch or resumed, on this
# or a new machine: its data, the run, its report. About 11-17 h on 2 CPU cores, by machine
# (results/experiment-small-2026-12-07/README.md); stop it at any point and run this again to go on.
#   RUN       the run folder (default runs/experiment-small).
#   SNAPSHOT  optional: a copy of a run (scripts/snapshot_run.py), e.g. a run part-way or the
#             committed results/experiment-small-2026-12-07. When RUN does not exist yet, the run
#             starts from that copy: finished cells and final stages are kept, a cell that was
#             training resumes from its resume.slim.pt. Unset: the run starts from scratch.
# Data collections resume too, and are instant when complete; ManiSkill's episodes of the same
# seed differ slightly between machines, so a recollected data/train is not byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.json}"
RUN="${RUN:-runs/experiment-small}"
SNAPSHOT="${SNAPSHOT:-}"
RS=.venv/bin/roboscape
if [ -n "$SNAPSHOT" ] && [ ! -f "$SNAPSHOT/experiment.json" ]; then
    echo "SNAPSHOT=$SNAPSHOT holds no experiment.json: give a folder written by scripts/snapshot_run.py" >&2
    exit 2
fi
if [ -n "$SNAPSHOT" ] && [ ! -e "$RUN" ]; then
    echo "== starting $RUN from the copy in $SNAPSHOT"
    mkdir -p "$RUN"
    cp -r "$SNAPSHOT/experiment.json" "$SNAPSHOT/cells" "$RUN/"
    for stage in reward_check wm_eval; do  # final stages done early (they are skipped when current)
        if [ -d "$SNAPSHOT/$stage" ]; then cp -r "$SNAPSHOT/$stage" "$RUN/"; fi
    done
fi
echo "== 1/3 data/train: BC's demonstrations and the world-model cells' start frames"
$RS collect --out data/train --scenes in-domain --episodes 320 --seed 0
echo "== 2/3 data/heldout: the reward check and the world-model evaluation"
$RS collect --out data/heldout --scenes in-domain ood --episodes 184 --seed 1 --source-mix 0.5 0.3 0.2
echo "== 3/3 experiment in $RUN (it writes the report at the end; \`roboscape report $RUN\` rebuilds it)"
$RS experiment --preset small --out "$RUN"
echo "report: $RUN/report/index.html (and REPORT.md)"
