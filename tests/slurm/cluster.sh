#!/usr/bin/env bash
# A real one-node Slurm cluster (Debian's slurm-wlm 22.05, munge, slurmdbd + MariaDB) for the tests.
#   bash tests/slurm/cluster.sh up       install if missing, configure, start, wait until the node is idle
#   bash tests/slurm/cluster.sh down     cancel jobs, stop every daemon, remove stale pid files
#   bash tests/slurm/cluster.sh status   what runs
# Idempotent; needs root (it writes /etc/slurm and starts system daemons).
set -euo pipefail

CLUSTER=batcher
CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-test
LOG=/var/log/slurm-test
NODE=$(hostname -s)

log() { printf '[cluster] %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        log "needs root (it installs packages and starts daemons); run the tests without it: -m 'not slurm'"
        exit 1
    fi
}

install() {
    local missing=()
    for cmd in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Slurm, munge, slurmdbd and MariaDB (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge slurmdbd mariadb-server mariadb-client >/dev/null
}

write_config() {
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOG"
    local mem
    mem=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
    cat >"$CONF_DIR/slurm.conf" <<CONF
# Written by tests/slurm/cluster.sh: one node on this machine, for torch-batcher's tests.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=500
MinJobAge=300
KillWait=10
MailProg=/bin/true
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
SchedulerParameters=sched_interval=1
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 RealMemory=$mem State=UNKNOWN
PartitionName=defq Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
    cat >"$CONF_DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq 1 $((limit * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    log "timed out after ${limit}s waiting for $what"
    return 1
}

start_munge() {
    pgrep -x munged >/dev/null && return 0
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munge munge -n
}

start_mariadb() {
    if ! pgrep -x mariadbd >/dev/null; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
        setsid -f /usr/sbin/mariadbd --user=mysql >"$LOG/mariadb.log" 2>&1 </dev/null
    fi
    wait_for 30 MariaDB mariadb -e "select 1"
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_slurm() {
    rm -f /run/slurmctld.pid /run/slurmd.pid /run/slurmdbd.pid
    pgrep -x slurmdbd >/dev/null || /usr/sbin/slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    wait_for 30 slurmctld scontrol ping
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    wait_for 60 "node $NODE to be idle" bash -c "sinfo -h -n $NODE -o %t | grep -qx idle"
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
}

up() {
    need_root
    install
    write_config
    start_munge
    start_mariadb
    start_slurm
    log "up: $(sinfo -h -o '%P %D %t')"
}

down() {
    need_root
    if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
        scancel --user=root >/dev/null 2>&1 || true
    fi
    for d in slurmd slurmctld slurmdbd; do pkill -x "$d" 2>/dev/null || true; done
    # slurmd waits for the steps of a job being killed (KillWait): give it 30 s, then end it and
    # its slurmstepd by force. A slurmd still shutting down would be taken for a running one by
    # the next `up`, which then finds the node down.
    for _ in $(seq 1 120); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x slurmdbd >/dev/null \
            || pgrep -f '^slurmstepd' >/dev/null || break
        sleep 0.25
    done
    for d in slurmd slurmctld slurmdbd; do pkill -KILL -x "$d" 2>/dev/null || true; done
    pkill -KILL -f '^slurmstepd' 2>/dev/null || true
    pkill -x mariadbd 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    # wait for them to be gone: an `up` right after must not find a server that is shutting down
    for _ in $(seq 1 120); do pgrep -x mariadbd >/dev/null || pgrep -x munged >/dev/null || break; sleep 0.25; done
    rm -f /run/slurmctld.pid /run/slurmd.pid /run/slurmdbd.pid
    log "down"
}

status() {
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        printf '%-10s %s\n' "$d" "$(pgrep -x "$d" >/dev/null && echo running || echo stopped)"
    done
    sinfo 2>/dev/null || true
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
