#!/usr/bin/env bash
# Stop the test cluster that slurm/cluster/up.sh started: cancel leftover jobs (their slurmstepd
# would outlive slurmd), then stop only this cluster's daemons, found through their pid files.
# Idempotent: with nothing running it does nothing. Logs stay in the scratch directory.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh"

cancel_jobs() {
    local ids pids
    ids=$(timeout 2 squeue -h -o %A 2>/dev/null) || return 0
    [ -n "$ids" ] || return 0
    echo "down.sh: cancelling jobs $(echo $ids)"
    # The jobs' processes, as this node's slurmd lists them, get SIGKILL at once: submitit ignores
    # the SIGTERM of scancel, so they would otherwise linger for KillWait and more.
    pids=$(timeout 2 scontrol listpids 2>/dev/null | awk 'NR > 1 { print $1 }')
    timeout 2 scancel $ids 2>/dev/null
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
    # Wait (at most 3 s) until Slurm has cleaned up the steps, before their slurmd goes away.
    local try
    for (( try = 0; try < 30; try++ )); do
        [ -n "$(timeout 1 squeue -h -o %A 2>/dev/null)" ] || return 0
        sleep 0.1
    done
}

# Stop in reverse start order, so slurmctld still reaches slurmdbd (and it MariaDB) while saving
# its state on the way down; each daemon gets 2 s after SIGTERM, then SIGKILL.
stop_daemons() {
    local i name comm pid try stopped=()
    for (( i = ${#DAEMONS[@]} - 1; i >= 0; i-- )); do
        read -r name comm <<< "${DAEMONS[i]}"
        if pid=$(own_pid "$name" "$comm"); then
            kill -TERM "$pid" 2>/dev/null
            for (( try = 0; try < 20; try++ )); do
                alive "$pid" "$comm" || break
                sleep 0.1
            done
            alive "$pid" "$comm" && kill -KILL "$pid" 2>/dev/null
            stopped+=("$name")
        fi
        rm -f "$(pid_file "$name")"
    done
    if (( ${#stopped[@]} )); then
        echo "down.sh: stopped ${stopped[*]}"
    else
        echo "down.sh: no test cluster daemons running in $SLURM_DIR"
    fi
}

start=${EPOCHREALTIME//[!0-9]/}
if own_pid slurmctld slurmctld >/dev/null; then cancel_jobs; fi
stop_daemons
rm -f "$ENV_FILE"
echo "down.sh: done in $(( (${EPOCHREALTIME//[!0-9]/} - start) / 1000 )) ms"
