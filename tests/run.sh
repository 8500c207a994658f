#!/usr/bin/env bash
# Install everything the test suite needs and run it:  bash tests/run.sh [pytest args]
#   - a fresh virtualenv (build/test-venv, made anew on every run) holding exactly the declared
#     dependencies: torch 2.13.0 CPU, snakemake 9, the Slurm executor plugin, the dev tools. Nothing
#     installed elsewhere on the machine is importable, so an undeclared package fails here too.
#     The project is installed the way the README says (`pip install -e`, default editable mode).
#   - a real Slurm cluster (Debian's slurm-wlm, munge, slurmdbd, MariaDB) for the tests marked
#     `slurm`: this machine as node of partition defq and, for the tests marked `multinode`, two more
#     nodes in network namespaces (partition pair), started before and stopped after. Needs root;
#     without root run `bash tests/run.sh -m "not slurm"` (pytest reports the deselected tests);
#     `-m "not multinode"` keeps the one-node cluster only.
#   - on a whole run, the Slurm tests (which mostly wait) run beside the others (see the end).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=build/test-venv
started=$(date +%s)
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e ".[dev]"
echo "tests/run.sh: fresh virtualenv $venv ready in $(($(date +%s) - started)) s"
# Tests start subprocesses (snakemake, batcher, python) from PATH or sys.executable: both are the venv's.
export PATH="$PWD/$venv/bin:$PATH" VIRTUAL_ENV="$PWD/$venv" TORCH_BATCHER_TEST_VENV="$PWD/$venv"
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE
export PYTHONNOUSERSITE=1

case " $* " in
    *"not slurm"*) nodes=0 ;;
    *"not multinode"*) nodes=1 ;;
    *) nodes=2 ;;
esac
if [ "$nodes" != 0 ]; then
    bash tests/slurm/cluster.sh up "$nodes"
    trap 'bash tests/slurm/cluster.sh down' EXIT
fi

# The Slurm tests mostly wait for the cluster's jobs, the install test for pip; on a whole run
# (no -m, -k or test paths given) they run beside the others, in a second pytest with its own
# temporary folder, its output printed after the first one's. The suite takes the longer of the
# two instead of their sum.
split=1
[ "$nodes" = 0 ] && split=0
for arg in "$@"; do
    case "$arg" in
        -m | -m* | -k | -k* | --basetemp* | -n | -n* | tests/* | *.py*) split=0 ;;
    esac
done
if [ "$split" = 0 ]; then
    "$venv/bin/python" -m pytest "$@"
    exit
fi
mkdir -p build
slurm_log=build/pytest-slurm.log
"$venv/bin/python" -m pytest -m "slurm or install" --basetemp=build/pytest-slurm "$@" > "$slurm_log" 2>&1 &
slurm_pid=$!
main_rc=0
"$venv/bin/python" -m pytest -m "not slurm and not install" --basetemp=build/pytest-main "$@" || main_rc=$?
slurm_rc=0
wait "$slurm_pid" || slurm_rc=$?
echo
echo "========== the Slurm and install tests (pytest -m 'slurm or install', run beside the above) =========="
cat "$slurm_log"
echo "tests/run.sh: the others exit $main_rc, the Slurm and install tests exit $slurm_rc; $(($(date +%s) - started)) s in all"
[ "$main_rc" = 0 ] && [ "$slurm_rc" = 0 ]
