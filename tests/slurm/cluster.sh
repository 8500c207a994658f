#!/usr/bin/env bash
# A real Slurm cluster on this machine (Debian's slurm-wlm 22.05, munge, slurmdbd + MariaDB) for the tests.
#   bash tests/slurm/cluster.sh up       install if missing, configure, start, wait until the node is idle
#   bash tests/slurm/cluster.sh up 2     the same, plus partition `pair`: two more nodes (tb1, tb2), each
#                                        in its own network namespace with its own address and host name
#   bash tests/slurm/cluster.sh down     cancel jobs, stop every daemon, remove the namespaces, the bridge
#                                        and the /etc/hosts lines, and stale pid files
#   bash tests/slurm/cluster.sh status   what runs
# Idempotent; needs root (it writes /etc/slurm and /etc/hosts, starts system daemons, makes namespaces).
#
# The two namespaced nodes: a bridge btb0 (10.77.0.1/24, the controller's address for them) and, per
# node, a namespace btnI with a veth pair into the bridge (10.77.0.1I) and a UTS namespace whose host
# name is the node's name, so a job step there sees `hostname` = tbI, as on a real cluster. The file
# system stays shared, like a cluster's network file system; munge's socket is a file, so one munged
# serves every namespace. The addresses exist only on this bridge: nothing leaves the machine.
set -euo pipefail

CLUSTER=batcher
CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-test
LOG=/var/log/slurm-test
NODE=$(hostname -s)
BRIDGE=btb0
NET=10.77.0
PAIR=(tb1 tb2)
HOSTS_TAG="# torch-batcher test cluster"

log() { printf '[cluster] %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        log "needs root (it installs packages and starts daemons); run the tests without it: -m 'not slurm'"
        exit 1
    fi
}

install() {
    local missing=()
    for cmd in slurmctld slurmd sbatch munged slurmdbd mariadbd ip; do
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Slurm, munge, slurmdbd, MariaDB and iproute2 (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge slurmdbd mariadb-server mariadb-client iproute2 >/dev/null
}

write_config() {  # write_config NODES
    local nodes=$1 mem ctl_addr=127.0.0.1 pair_lines=""
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOG"
    mem=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
    if [ "$nodes" = 2 ]; then
        ctl_addr=$NET.1  # on the bridge: reachable from this namespace and from the nodes' ones
        pair_lines="NodeName=${PAIR[0]} NodeAddr=$NET.11 CPUs=4 RealMemory=8000 State=UNKNOWN
NodeName=${PAIR[1]} NodeAddr=$NET.12 CPUs=4 RealMemory=8000 State=UNKNOWN
PartitionName=pair Nodes=${PAIR[0]},${PAIR[1]} MaxTime=INFINITE State=UP"
    fi
    cat >"$CONF_DIR/slurm.conf" <<CONF
# Written by tests/slurm/cluster.sh: one node on this machine, for torch-batcher's tests.
ClusterName=$CLUSTER
SlurmctldHost=$NODE($ctl_addr)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
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
$pair_lines
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

start_network() {  # the bridge, one namespace per node of partition pair, and their host names
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr replace "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i name
    for i in 1 2; do
        name=${PAIR[$((i - 1))]}
        ip netns list | grep -qw "btn$i" || ip netns add "btn$i"
        if ! ip link show "btv$i" >/dev/null 2>&1; then
            ip link add "btv$i" type veth peer name eth0 netns "btn$i"
        fi
        ip link set "btv$i" master "$BRIDGE" up
        ip -n "btn$i" addr replace "$NET.1$i/24" dev eth0
        ip -n "btn$i" link set eth0 up
        ip -n "btn$i" link set lo up
        grep -q "^$NET.1$i $name " /etc/hosts || echo "$NET.1$i $name $HOSTS_TAG" >>/etc/hosts
    done
    wait_for 10 "the namespaces to reach each other" reachable btn2 "$NET.11"
}

reachable() {  # reachable NAMESPACE ADDRESS: a TCP connect from there is answered (refused is an answer)
    local out
    out=$(ip netns exec "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$2/9" 2>&1 || true)
    [[ $out == *refused* ]]
}

start_pair() {  # slurmd of tb1/tb2, each in its namespace under its own host name
    # nsenter, not `ip netns exec`: that one mounts a fresh /sys without /sys/fs/cgroup, and
    # slurmd then fails ("Unable to initialize cgroup plugin")
    local i name
    for i in 1 2; do
        name=${PAIR[$((i - 1))]}
        mkdir -p "$STATE/d/$name"
        pgrep -f "^/usr/sbin/slurmd -N $name\$" >/dev/null \
            || nsenter --net="/run/netns/btn$i" unshare --uts sh -c "hostname $name && exec /usr/sbin/slurmd -N $name"
    done
    wait_for 60 "nodes ${PAIR[*]} to be idle" \
        bash -c "[ \"\$(sinfo -h -p pair -o %t | sort -u)\" = idle ]"
}

start_slurm() {
    rm -f /run/slurmctld.pid /run/slurmd*.pid /run/slurmdbd.pid
    pgrep -x slurmdbd >/dev/null || /usr/sbin/slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    wait_for 30 slurmctld scontrol ping
    mkdir -p "$STATE/d/$NODE"
    pgrep -f "^/usr/sbin/slurmd\$" >/dev/null || /usr/sbin/slurmd
    wait_for 60 "node $NODE to be idle" bash -c "sinfo -h -n $NODE -o %t | grep -qx idle"
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
}

up() {  # up [NODES]
    local nodes=${1:-1}
    pgrep -f "^/usr/sbin/slurmd -N ${PAIR[0]}\$" >/dev/null && nodes=2  # up never takes nodes away
    case "$nodes" in 1 | 2) ;; *) log "usage: up [1|2] (2: also partition pair, two namespaced nodes)"; exit 2 ;; esac
    need_root
    install
    if [ "$nodes" = 2 ] && ! pgrep -f "^/usr/sbin/slurmd -N ${PAIR[0]}\$" >/dev/null && pgrep -x slurmctld >/dev/null; then
        down  # a one-node cluster is up: the controller must move to the bridge's address
    fi
    write_config "$nodes"
    [ "$nodes" = 2 ] && start_network
    start_munge
    start_mariadb
    start_slurm
    [ "$nodes" = 2 ] && start_pair
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
    rm -f /run/slurmctld.pid /run/slurmd*.pid /run/slurmdbd.pid
    stop_network
    log "down"
}

stop_network() {  # whatever start_network made: namespaces (and what still runs in them), veths, bridge, hosts
    local i pids
    for i in 1 2; do
        if ip netns list | grep -qw "btn$i"; then
            pids=$(ip netns pids "btn$i" || true)
            [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
            ip netns delete "btn$i"
        fi
        ip link delete "btv$i" 2>/dev/null || true  # gone with its namespace's peer, normally
    done
    ip link delete "$BRIDGE" 2>/dev/null || true
    sed -i "/$HOSTS_TAG\$/d" /etc/hosts
}

status() {
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        printf '%-10s %s\n' "$d" "$(pgrep -x "$d" >/dev/null && echo running || echo stopped)"
    done
    ip netns list
    sinfo 2>/dev/null || true
}

case "${1:-}" in
    up) up "${2:-1}" ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up [1|2]|down|status" >&2; exit 2 ;;
esac
