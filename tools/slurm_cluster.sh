#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and for trying the SLURM
# profile without a real cluster. Runs without systemd: every daemon is started
# by hand and stopped by the PID in its pid file.
#
# Usage (as root, or with sudo available):
#   bash tools/slurm_cluster.sh up       # install what is missing, configure, start, wait for the node
#   bash tools/slurm_cluster.sh down     # stop every daemon this script starts, by PID
#   bash tools/slurm_cluster.sh status   # which daemons run, and the node's state
#
# SLURM_CLUSTER_CPUS=N bash tools/slurm_cluster.sh up announces N CPUs instead of the
# machine's own (slurmd then takes the node size from slurm.conf, not the hardware):
# a scheduling test of packed jobs needs more slots than a 2-core CI machine has,
# and its tiny test-preset jobs share the real cores.
#
# `up` is idempotent: a second call starts nothing that already runs and
# rewrites no config that is already right (a changed slurm.conf restarts the
# SLURM daemons). Accounting (sacct) comes from slurmdbd with a local MariaDB,
# because the Snakemake SLURM plugin polls job states with sacct whenever sacct
# exists, and hangs if sacct has no database behind it.
# Each setting below carries a comment saying why it is there (each was needed
# on a 2-core Debian 12 machine without systemd).
set -euo pipefail

CLUSTER_NAME="dftscreen"
SLURM_CONF=/etc/slurm/slurm.conf
SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
# Pid files of the daemons this script starts (paths are set in the configs below).
MUNGED_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
MARIADB_SOCKET=/run/mysqld/mysqld.sock
SLURMDBD_PID=/run/slurmdbd.pid
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
WAIT_SECONDS=${SLURM_CLUSTER_WAIT_SECONDS:-90}

log() { printf '[slurm_cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"

# --- helpers --------------------------------------------------------------------

# True when the pid file names a live process whose executable is $2.
is_running() {
    local pid_file=$1 name=$2 pid
    [[ -f "$pid_file" ]] || return 1
    pid=$(tr -dc '0-9' <"$pid_file")
    [[ -n "$pid" ]] && [[ -r "/proc/$pid/comm" ]] && [[ "$(cat "/proc/$pid/comm")" == "$name"* ]]
}

# Wait until the command "$@" succeeds, at most WAIT_SECONDS.
wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${WAIT_SECONDS}s waiting for $what"
        sleep 0.5
    done
}

# Stop the daemon named in a pid file (TERM, then KILL after 20 s) and remove the file.
stop_by_pid() {
    local pid_file=$1 name=$2 pid
    if is_running "$pid_file" "$name"; then
        pid=$(tr -dc '0-9' <"$pid_file")
        log "stopping $name (pid $pid)"
        $SUDO kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            [[ -d "/proc/$pid" ]] || break
            sleep 0.5
        done
        if [[ -d "/proc/$pid" ]]; then
            log "$name (pid $pid) ignored TERM; killing it"
            $SUDO kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # A killed daemon leaves its pid file behind; a stale one confuses the next start.
    $SUDO rm -f "$pid_file"
}

# Write $2 (content) to file $1 with mode $3 and owner $4 unless it is already so.
# Returns 0 when the file changed.
write_if_changed() {
    local path=$1 content=$2 mode=$3 owner=$4
    if [[ -f "$path" ]] && [[ "$(cat "$path")" == "$content" ]]; then
        $SUDO chmod "$mode" "$path"; $SUDO chown "$owner" "$path"
        return 1
    fi
    log "writing $path"
    printf '%s\n' "$content" | $SUDO tee "$path" >/dev/null
    $SUDO chmod "$mode" "$path"; $SUDO chown "$owner" "$path"
    return 0
}

# --- up -------------------------------------------------------------------------

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    # Debian's policy-rc.d (exit 101) in containers keeps the package scripts
    # from starting the daemons; this script starts them itself.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_munge() {
    is_running "$MUNGED_PID" munged && return 0
    # Without systemd nothing creates /run/munge (socket and pid file live there).
    $SUDO install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        $SUDO -u munge mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || { $SUDO runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key; }
    fi
    $SUDO rm -f "$MUNGED_PID"
    log "starting munged"
    $SUDO runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGED_PID"
    wait_for "munge" bash -c "munge -n | unmunge"
}

start_mariadb() {
    if ! is_running "$MARIADB_PID" mariadbd; then
        $SUDO install -d -o mysql -g mysql -m 0755 /run/mysqld
        [[ -d /var/lib/mysql/mysql ]] || $SUDO mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        $SUDO rm -f "$MARIADB_PID"
        log "starting mariadbd"
        # Local socket only: the accounting database is for this machine's slurmdbd.
        $SUDO setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
            --innodb-buffer-pool-size=1G --innodb-lock-wait-timeout=900 \
            --socket="$MARIADB_SOCKET" --pid-file="$MARIADB_PID" \
            --log-error=/var/log/mysql/error.log </dev/null >/dev/null 2>&1 &
        wait_for "mariadbd" $SUDO mariadb-admin --socket="$MARIADB_SOCKET" ping
    fi
    # slurmdbd runs as the slurm user and logs in over the socket as that user:
    # unix_socket authentication, so no password exists anywhere.
    $SUDO mariadb --socket="$MARIADB_SOCKET" -e "
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

slurmdbd_conf() {
    cat <<EOF
# Written by tools/slurm_cluster.sh (one-node test cluster).
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$SLURMDBD_PID
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
}

slurm_conf() {
    local host node_line cpus memory
    host=$(hostname -s)
    # First line of `slurmd -C` is this machine's NodeName line (CPUs, sockets, memory).
    node_line=$(slurmd -C | head -n 1)
    cpus=$(grep -oP 'CPUs=\K[0-9]+' <<<"$node_line")
    memory=$(grep -oP 'RealMemory=\K[0-9]+' <<<"$node_line")
    local overrides=""
    if [[ -n "${SLURM_CLUSTER_CPUS:-}" && "${SLURM_CLUSTER_CPUS}" != "$cpus" ]]; then
        cpus=$SLURM_CLUSTER_CPUS
        # Without it slurmd drains a node configured larger than its hardware.
        overrides="SlurmdParameters=config_overrides"
    fi
    cat <<EOF
# Written by tools/slurm_cluster.sh (one-node test cluster); rewritten by its next 'up'.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups without systemd: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job without --mem takes all node memory and jobs run one at a time.
DefMemPerCPU=1024
# Debian's OpenMPI is built with PMIx: srun starts MPI ranks through it.
MpiDefault=pmix
ReturnToService=2
MailProg=/bin/true
# Finished jobs stay visible to squeue for 5 minutes (the plugin's squeue mode needs that).
MinJobAge=300
# A job over its time limit is signalled at once and killed 5 s later, so a
# time-limit failure shows up quickly.
OverTimeLimit=0
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# sacct shows the Snakemake plugin's --comment (rule and wildcards of each job).
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_slurmdbd() {
    write_if_changed "$SLURMDBD_CONF" "$(slurmdbd_conf)" 600 slurm:slurm && stop_by_pid "$SLURMDBD_PID" slurmdbd
    if ! is_running "$SLURMDBD_PID" slurmdbd; then
        $SUDO rm -f "$SLURMDBD_PID"
        log "starting slurmdbd"
        $SUDO /usr/sbin/slurmdbd
    fi
    wait_for "slurmdbd" sacctmgr --noheader --parsable2 show cluster format=Cluster
    if ! sacctmgr --noheader --parsable2 show cluster format=Cluster | grep -qx "$CLUSTER_NAME"; then
        $SUDO sacctmgr --immediate add cluster "$CLUSTER_NAME" >/dev/null
    fi
}

# slurm.conf comes first: every client command (sacctmgr too) reads it.
write_slurm_conf() {
    if write_if_changed "$SLURM_CONF" "$(slurm_conf)" 644 root:root; then
        stop_by_pid "$SLURMD_PID" slurmd
        stop_by_pid "$SLURMCTLD_PID" slurmctld
    fi
}

start_slurm() {
    local saved_name=/var/lib/slurm/slurmctld/clustername
    # slurmctld refuses to start on state saved under another ClusterName.
    if [[ -f "$saved_name" ]] && [[ "$(cat "$saved_name")" != "$CLUSTER_NAME" ]]; then
        log "state in /var/lib/slurm/slurmctld belongs to cluster '$(cat "$saved_name")': wiping it"
        is_running "$SLURMCTLD_PID" slurmctld && stop_by_pid "$SLURMCTLD_PID" slurmctld
        $SUDO find /var/lib/slurm/slurmctld -mindepth 1 -delete
    fi
    if ! is_running "$SLURMCTLD_PID" slurmctld; then
        $SUDO rm -f "$SLURMCTLD_PID"
        log "starting slurmctld"
        $SUDO /usr/sbin/slurmctld
    fi
    wait_for "slurmctld" scontrol ping
    if ! is_running "$SLURMD_PID" slurmd; then
        $SUDO rm -f "$SLURMD_PID"
        log "starting slurmd"
        $SUDO /usr/sbin/slurmd
    fi
    wait_for "node $(hostname -s) to be idle" node_is_idle
}

node_is_idle() {
    local state
    state=$(sinfo --noheader --Node --nodes="$(hostname -s)" --format=%T)
    # "idle", or "mixed"/"allocated" when jobs already run: all mean the node works.
    [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]]
}

cmd_up() {
    install_packages
    start_munge
    start_mariadb
    write_slurm_conf
    start_slurmdbd
    start_slurm
    log "cluster '$CLUSTER_NAME' is up: node $(hostname -s), $(sinfo --noheader --Node --format='%c CPUs, %m MB, %T')"
}

# --- down / status ----------------------------------------------------------------

cmd_down() {
    stop_by_pid "$SLURMD_PID" slurmd
    stop_by_pid "$SLURMCTLD_PID" slurmctld
    stop_by_pid "$SLURMDBD_PID" slurmdbd
    stop_by_pid "$MARIADB_PID" mariadbd
    stop_by_pid "$MUNGED_PID" munged
    log "cluster is down"
}

cmd_status() {
    local pid_file name all_up=0
    for pair in "$MUNGED_PID:munged" "$MARIADB_PID:mariadbd" "$SLURMDBD_PID:slurmdbd" \
        "$SLURMCTLD_PID:slurmctld" "$SLURMD_PID:slurmd"; do
        pid_file=${pair%%:*}; name=${pair##*:}
        if is_running "$pid_file" "$name"; then
            echo "$name: running (pid $(tr -dc '0-9' <"$pid_file"))"
        else
            echo "$name: not running"; all_up=1
        fi
    done
    if ((all_up == 0)); then
        sinfo --noheader --Node --format='node %N: %T, %c CPUs, %m MB'
    fi
    return $all_up
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
