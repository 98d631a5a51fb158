#!/usr/bin/env bash
# Stop the one-node SLURM cluster that tests/slurm/start_cluster.sh started in STATE_DIR.
#
# Usage: tests/slurm/stop_cluster.sh STATE_DIR
#
# Cancels the cluster's jobs, stops exactly the daemons recorded in STATE_DIR/pids/ (each pid is
# checked to still be that daemon, started with this STATE_DIR, before it is signalled), and puts
# back the /etc/slurm/slurm.conf that was there before (or removes ours if there was none).
# STATE_DIR itself (logs, job state) is left for inspection. Safe to run twice.
set -uo pipefail

STATE="${1:?usage: stop_cluster.sh STATE_DIR}"
[[ -d "$STATE" ]] || {
    echo "stop_cluster.sh: error: $STATE is not a folder made by start_cluster.sh" >&2
    exit 1
}
STATE="$(cd "$STATE" && pwd)"
CONF="$STATE/etc/slurm.conf"
MARKER="# written by cd8exo tests/slurm/start_cluster.sh"
status=0

# True when pid $1 is alive and its command line names this cluster's state folder.
is_ours() {
    local pid=$1
    [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$STATE/"
}

pid_of() {
    cat "$STATE/pids/$1.pid" 2>/dev/null || true
}

# Cancel the jobs still queued or running, so no job step outlives slurmd.
ctld_pid="$(pid_of slurmctld)"
if [[ -f "$CONF" ]] && is_ours "$ctld_pid"; then
    export SLURM_CONF="$CONF"
    jobs="$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null | tr '\n' ' ')"
    if [[ -n "${jobs// /}" ]]; then
        # shellcheck disable=SC2086  # one argument per job id
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z "$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ]] && break
            sleep 1
        done
    fi
fi

for name in slurmd slurmctld munged; do
    pid="$(pid_of "$name")"
    [[ -n "$pid" ]] || continue
    if ! is_ours "$pid"; then
        rm -f "$STATE/pids/$name.pid"  # already gone (or the pid was reused by someone else)
        continue
    fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do
        is_ours "$pid" || break
        sleep 0.2
    done
    if is_ours "$pid"; then
        echo "stop_cluster.sh: $name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
        sleep 0.5
    fi
    if is_ours "$pid"; then
        echo "stop_cluster.sh: error: could not stop $name (pid $pid)" >&2
        status=1
    else
        rm -f "$STATE/pids/$name.pid"
    fi
done

# Restore /etc/slurm/slurm.conf.
ETC=/etc/slurm
BACKUP="$ETC/slurm.conf.before-cd8exo-test"
if [[ -f "$ETC/slurm.conf" ]] && head -n 1 "$ETC/slurm.conf" | grep -qxF "$MARKER state=$STATE"; then
    rm -f "$ETC/slurm.conf"
fi
if [[ -f "$STATE/backup/moved-slurm-conf" ]]; then
    if [[ -e "$ETC/slurm.conf" || -L "$ETC/slurm.conf" ]]; then
        echo "stop_cluster.sh: error: $ETC/slurm.conf was replaced by someone else while the test" \
            "cluster ran; the original is kept at $BACKUP: put it back by hand" >&2
        status=1
    elif [[ -e "$BACKUP" || -L "$BACKUP" ]]; then
        mv "$BACKUP" "$ETC/slurm.conf"
        rm -f "$STATE/backup/moved-slurm-conf"
    fi
fi
if [[ -f "$STATE/backup/created-etc-slurm" ]]; then
    rmdir "$ETC" 2>/dev/null && rm -f "$STATE/backup/created-etc-slurm"
fi

if ((status == 0)); then
    echo "stop_cluster.sh: test cluster in $STATE stopped" >&2
fi
exit "$status"
