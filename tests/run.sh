#!/usr/bin/env bash
# Install everything the test suite needs and run it:  bash tests/run.sh [pytest args]
#   - Python packages (torch 2.13.0 CPU, snakemake 9, the Slurm executor plugin, dev tools)
#   - a real one-node Slurm cluster (Debian's slurm-wlm, munge, slurmdbd, MariaDB) for the
#     tests marked `slurm`, started before and stopped after. Needs root; without root run
#     `bash tests/run.sh -m "not slurm"` (pytest reports the deselected tests).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e ".[dev]" --config-settings editable_mode=compat

case " $* " in
    *"not slurm"*) slurm=no ;;
    *) slurm=yes ;;
esac
if [ "$slurm" = yes ]; then
    bash tests/slurm/cluster.sh up
    trap 'bash tests/slurm/cluster.sh down' EXIT
fi

python3 -m pytest "$@"
