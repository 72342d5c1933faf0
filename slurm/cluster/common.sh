# Shared by up.sh and down.sh: where the test cluster lives and which daemons it owns.
# Sourced, not executed. Every path of the cluster is under one scratch directory.

SLURM_DIR="${BENCH_SLURM_DIR:-/tmp/petl-slurm}"
MARKER="$SLURM_DIR/.petl-slurm-cluster"   # proves the directory is ours before we wipe it
ENV_FILE="$SLURM_DIR/env.sh"
export SLURM_CONF="$SLURM_DIR/etc/slurm.conf"

CLUSTER_NAME="petl-test"
SLURMCTLD_PORT=6817
SLURMD_PORT=6818
SLURMDBD_PORT=6819
MARIADB_PORT=6820

# Daemons in start order: "<name> <command name in /proc/PID/comm>".
DAEMONS=("munged munged" "mariadb mariadbd" "slurmdbd slurmdbd" "slurmctld slurmctld" "slurmd slurmd")

pid_file() { echo "$SLURM_DIR/run/$1.pid"; }

# Whether PID is a live (not zombie) process of command COMM. A dead daemon may linger as a zombie
# for a second or two here, until pid 1 reaps it.
alive() {
    local pid=$1 comm=$2 stat
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $stat != *") Z "* ]]
}

# The pid of daemon NAME (command COMM) when it is running. A stale pid file may name a recycled
# pid that now belongs to something else: never report (and so never signal) that.
own_pid() {
    local name=$1 comm=$2 file pid
    file=$(pid_file "$name")
    [ -s "$file" ] || return 1
    pid=$(tr -dc '0-9' < "$file")
    [ -n "$pid" ] && alive "$pid" "$comm" || return 1
    echo "$pid"
}
