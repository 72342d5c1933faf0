#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster for tests and CI: munge, MariaDB, slurmdbd, slurmctld
# and slurmd from Debian packages, with real accounting (submitit learns job states only from sacct)
# and fake GPUs declared through gres. Everything lives under one scratch directory.
#
# Usage (as root):  slurm/cluster/up.sh   then   . "${BENCH_SLURM_DIR:-/tmp/petl-slurm}/env.sh"
# Stop it with slurm/cluster/down.sh.
# Environment: BENCH_SLURM_DIR (scratch dir, default /tmp/petl-slurm), BENCH_SLURM_CPUS (8),
# BENCH_SLURM_GPUS (4), BENCH_SLURM_MEM_MB (16384): what the node declares, which may exceed the
# machine; BENCH_SLURM_WAIT_S (30): how long to wait for each daemon before giving up.
set -euo pipefail
START=${EPOCHREALTIME//[!0-9]/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh"

CPUS=${BENCH_SLURM_CPUS:-8}
GPUS=${BENCH_SLURM_GPUS:-4}
MEM_MB=${BENCH_SLURM_MEM_MB:-16384}
WAIT_S=${BENCH_SLURM_WAIT_S:-30}
PARTITION=test
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
HOST=$(hostname -s)
MUNGE_SOCKET="$SLURM_DIR/munge/run/munge.socket"
LOGS=("$SLURM_DIR"/log/munged.log "$SLURM_DIR"/log/mariadb.log "$SLURM_DIR"/log/slurmdbd.log
      "$SLURM_DIR"/log/slurmctld.log "$SLURM_DIR"/log/slurmd.log)

# Seconds since a timestamp in microseconds (${EPOCHREALTIME//[!0-9]/}), to one decimal.
elapsed_since() {
    local ms=$(( (${EPOCHREALTIME//[!0-9]/} - $1) / 1000 ))
    printf '%d.%d' $(( ms / 1000 )) $(( ms % 1000 / 100 ))
}

die() { echo "up.sh: $*" >&2; exit 1; }

# A daemon did not come up: show every daemon's log, stop what was started, fail.
fail() {
    echo "up.sh: $*" >&2
    for log in "${LOGS[@]}"; do
        [ -s "$log" ] || continue
        echo "----- last lines of $log -----" >&2
        tail -n 25 "$log" >&2
    done
    bash "$HERE/down.sh" >&2 || true
    exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for WHAT COMMAND...: poll until COMMAND succeeds, at most WAIT_S seconds.
wait_for() {
    local what=$1 deadline=$(( SECONDS + WAIT_S ))
    shift
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || fail "$what did not come up within ${WAIT_S} s"
        sleep 0.1
    done
}

refuse_if_running() {
    local entry
    for entry in "${DAEMONS[@]}"; do
        # shellcheck disable=SC2086
        if own_pid $entry >/dev/null; then
            die "the test cluster in $SLURM_DIR is already running; stop it first with $HERE/down.sh"
        fi
    done
    local port
    for port in $SLURMCTLD_PORT $SLURMD_PORT $SLURMDBD_PORT $MARIADB_PORT; do
        port_open "$port" && die "port $port on 127.0.0.1 is already in use (another Slurm or" \
            "MariaDB?); stop it, or its cluster's down.sh, before starting this one"
    done
    return 0
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    (( ${#missing[@]} )) || return 0
    echo "up.sh: installing ${missing[*]}"
    local started=${EPOCHREALTIME//[!0-9]/}
    # Package scripts would start munge and MariaDB as system services; a policy-rc.d that exits
    # 101 forbids it. Only remove the file if this script created it.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created_policy=1
    fi
    local log status=0
    log=$(mktemp)
    apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -q >"$log" 2>&1 || status=$?
    apt_install "${missing[@]}" >>"$log" 2>&1 || {
        # Stale package lists name files the mirror no longer has: refresh once and retry.
        apt-get update -q >>"$log" 2>&1 && apt_install "${missing[@]}" >>"$log" 2>&1
    } || status=$?
    (( created_policy )) && rm -f "$policy"
    if (( status )); then
        cat "$log" >&2
        rm -f "$log"
        die "installing ${missing[*]} failed (apt output above)"
    fi
    rm -f "$log"
    echo "up.sh: installed in $(elapsed_since "$started") s"
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# A fresh scratch directory. An existing one is wiped only if an earlier up.sh made it.
prepare_dir() {
    if [ -e "$SLURM_DIR" ]; then
        if [ -e "$MARKER" ]; then
            rm -rf "$SLURM_DIR"
        elif [ -n "$(ls -A "$SLURM_DIR")" ]; then
            die "$SLURM_DIR exists and was not made by up.sh; set BENCH_SLURM_DIR to an empty or new directory"
        fi
    fi
    mkdir -p "$SLURM_DIR"/{etc,run,log,state,spool/slurmd,munge/etc,munge/run,munge/lib,mysql,fakedev}
    touch "$MARKER"
    chmod 0755 "$SLURM_DIR" "$SLURM_DIR/munge" "$SLURM_DIR/munge/run"
    chmod 0700 "$SLURM_DIR/munge/etc" "$SLURM_DIR/munge/lib"
    dd if=/dev/urandom of="$SLURM_DIR/munge/etc/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$SLURM_DIR/munge/etc/munge.key"
    local i
    for (( i = 0; i < GPUS; i++ )); do ln -s /dev/null "$SLURM_DIR/fakedev/nvidia$i"; done
}

# Fill a template's @NAME@ fields.
render() {
    sed -e "s|@DIR@|$SLURM_DIR|g" -e "s|@HOST@|$HOST|g" -e "s|@CLUSTER@|$CLUSTER_NAME|g" \
        -e "s|@SLURMCTLD_PORT@|$SLURMCTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@SLURMDBD_PORT@|$SLURMDBD_PORT|g" -e "s|@MARIADB_PORT@|$MARIADB_PORT|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@GPUS@|$GPUS|g" -e "s|@LAST_GPU@|$(( GPUS - 1 ))|g" \
        -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@PARTITION@|$PARTITION|g" -e "s|@DB_PASS@|$DB_PASS|g" \
        "$HERE/templates/$1" > "$2"
}

write_configs() {
    DB_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    render slurm.conf.in "$SLURM_CONF"
    render gres.conf.in "$SLURM_DIR/etc/gres.conf"
    cp "$HERE/templates/cgroup.conf" "$SLURM_DIR/etc/cgroup.conf"
    render slurmdbd.conf.in "$SLURM_DIR/etc/slurmdbd.conf"
    chmod 0600 "$SLURM_DIR/etc/slurmdbd.conf"   # slurmdbd refuses a readable file (it has a password)
    render mariadb-init.sql.in "$SLURM_DIR/etc/mariadb-init.sql"
    chmod 0600 "$SLURM_DIR/etc/mariadb-init.sql"
}

munge_works() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }

start_munge() {
    munged --key-file="$SLURM_DIR/munge/etc/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$(pid_file munged)" --log-file="$SLURM_DIR/log/munged.log" \
        --seed-file="$SLURM_DIR/munge/lib/munged.seed" \
        || fail "munged refused to start"
    wait_for "munged" munge_works
}

start_mariadb() {
    mariadb-install-db --no-defaults --datadir="$SLURM_DIR/mysql/data" --user=root --skip-test-db \
        > "$SLURM_DIR/log/mariadb-install.log" 2>&1 \
        || { cat "$SLURM_DIR/log/mariadb-install.log" >&2; fail "mariadb-install-db failed"; }
    # mariadbd stays in the foreground: detach it, with no tie to this script's output.
    setsid mariadbd --no-defaults --user=root --datadir="$SLURM_DIR/mysql/data" \
        --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$SLURM_DIR/mysql/mysqld.sock" \
        --pid-file="$(pid_file mariadb)" --log-error="$SLURM_DIR/log/mariadb.log" \
        --skip-name-resolve --skip-log-bin --innodb-flush-log-at-trx-commit=0 \
        --init-file="$SLURM_DIR/etc/mariadb-init.sql" </dev/null >/dev/null 2>&1 &
    wait_for "MariaDB (port $MARIADB_PORT)" port_open "$MARIADB_PORT"
}

start_slurmdbd() {
    slurmdbd || fail "slurmdbd refused to start"
    wait_for "slurmdbd (port $SLURMDBD_PORT)" port_open "$SLURMDBD_PORT"
}

node_idle() { [ "$(timeout 2 sinfo -h -n "$HOST" -o %T)" = idle ]; }
cluster_registered() {
    timeout 2 sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER_NAME"
}

start_slurm() {
    slurmctld || fail "slurmctld refused to start"
    wait_for "slurmctld" timeout 2 scontrol ping
    slurmd || fail "slurmd refused to start"
    wait_for "node $HOST (idle in sinfo)" node_idle
    wait_for "cluster $CLUSTER_NAME in the accounting database" cluster_registered
}

write_env_file() {
    cat > "$ENV_FILE.tmp" <<ENV
# Source this file to point Slurm's commands (sbatch, squeue, sacct, ...) at the test cluster.
export BENCH_SLURM_DIR="$SLURM_DIR"
export SLURM_CONF="$SLURM_CONF"
ENV
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and runs the Slurm daemons)"
for setting in CPUS GPUS MEM_MB WAIT_S; do
    [[ ${!setting} =~ ^[1-9][0-9]*$ ]] || die "BENCH_SLURM_$setting must be a positive integer, got '${!setting}'"
done
refuse_if_running
install_packages
prepare_dir
write_configs
start_munge
start_mariadb
start_slurmdbd
start_slurm
write_env_file
printf 'up.sh: SLURM test cluster up in %s s (node %s: %s CPUs, %s fake GPUs; partition %s)\n' \
    "$(elapsed_since "$START")" "$HOST" "$CPUS" "$GPUS" "$PARTITION"
echo "up.sh: use it with:  . $ENV_FILE"
