#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this machine, for the tests in tests/slurm/.
#
# Usage: tests/slurm/start_cluster.sh [STATE_DIR]
#
# - installs Debian's slurm-wlm and munge with apt-get when they are missing (needs root);
# - writes slurm.conf for this machine (controller and compute node on 127.0.0.1, the CPU count
#   and memory that `slurmd -C` measures) into STATE_DIR (a new temporary folder by default);
# - makes it visible at /etc/slurm/slurm.conf, because `srun` inside a job reads that file unless
#   SLURM_CONF reaches it; an existing /etc/slurm/slurm.conf is moved aside to
#   /etc/slurm/slurm.conf.before-cd8exo-test and put back by stop_cluster.sh;
# - starts its own munged (own key and socket: a system munged, if any, is left alone),
#   slurmctld and slurmd, each detached, and records their pids in STATE_DIR/pids/;
# - waits (bounded) until `sinfo` shows the node idle.
#
# On success the last line printed is the path of STATE_DIR/env, a file of `KEY=VALUE` lines
# (SLURM_CONF, CD8EXO_SLURM_STATE, CD8EXO_SLURM_PARTITION) to put in the environment of
# sbatch/squeue/snakemake. Stop with: tests/slurm/stop_cluster.sh STATE_DIR
# On failure the daemons already started are stopped again, /etc/slurm is restored and their
# logs are printed.
set -euo pipefail

PARTITION="${CD8EXO_SLURM_PARTITION:-main}"  # must match slurm_partition in profiles/slurm
WAIT_SECONDS="${CD8EXO_SLURM_WAIT_SECONDS:-90}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MARKER="# written by cd8exo tests/slurm/start_cluster.sh"

die() {
    echo "start_cluster.sh: error: $*" >&2
    exit 1
}

[[ "$(id -u)" == 0 ]] || die "must run as root (it starts slurmctld/slurmd and writes /etc/slurm/slurm.conf); CI runs as root"

need_install=()
for tool in slurmctld slurmd sinfo sbatch squeue; do
    command -v "$tool" >/dev/null || need_install=(slurm-wlm)
done
command -v munged >/dev/null && command -v mungekey >/dev/null || need_install+=(munge)
if ((${#need_install[@]})); then
    echo "start_cluster.sh: installing ${need_install[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed; install slurm-wlm and munge by hand"
    apt-get install -y -qq --no-install-recommends "${need_install[@]}" >&2 ||
        die "apt-get install ${need_install[*]} failed; install them by hand"
fi

STATE="${1:-}"
if [[ -z "$STATE" ]]; then
    STATE="$(mktemp -d /tmp/cd8exo-slurm.XXXXXX)"
else
    mkdir -p "$STATE"
    STATE="$(cd "$STATE" && pwd)"
    [[ -z "$(ls -A "$STATE")" ]] || die "state folder $STATE is not empty; give a new or empty folder"
fi
chmod 700 "$STATE"
mkdir -p "$STATE"/{etc,log,pids,munge,ctld,slurmd,backup}
chmod 755 "$STATE/munge"  # munged refuses a socket folder writable by others

# A port nobody listens on yet, so a second cluster or another service is never disturbed.
free_port() {
    local port=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}
CTLD_PORT="$(free_port 6817)"
SLURMD_PORT="$(free_port $((CTLD_PORT + 1)))"

HOST="$(hostname -s)"
# `slurmd -C` prints this machine's NodeName/CPUs/.../RealMemory as slurmd itself will measure it.
NODE_LINE="$(slurmd -C | grep '^NodeName=')" || die "slurmd -C did not report this machine's hardware"
NODE_LINE="${NODE_LINE/NodeName=* CPUs=/NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=}"

CONF="$STATE/etc/slurm.conf"
cat >"$CONF" <<EOF
$MARKER state=$STATE
# One-node test cluster: controller and compute node on this machine (127.0.0.1).
ClusterName=cd8exo-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/pids/slurmctld.pidfile
SlurmdPidFile=$STATE/pids/slurmd.pidfile
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: track job processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# No accounting database: job status comes from squeue, so keep finished jobs listed for a day.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=86400
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
$NODE_LINE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

cat >"$STATE/env" <<EOF
SLURM_CONF=$CONF
CD8EXO_SLURM_STATE=$STATE
CD8EXO_SLURM_PARTITION=$PARTITION
EOF
export SLURM_CONF="$CONF"

# True when a daemon recorded in state folder $1 still runs with that folder on its command line.
cluster_alive() {
    local pidfile pid
    for pidfile in "$1"/pids/*.pid; do
        [[ -f "$pidfile" ]] || continue
        pid="$(cat "$pidfile")"
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$1/" && return 0
    done
    return 1
}

started_ok=0
on_exit() {
    if ((started_ok == 0)); then
        echo "start_cluster.sh: failed; stopping what was started and restoring /etc/slurm" >&2
        for log in "$STATE"/log/*; do
            [[ -f "$log" ]] || continue
            echo "----- last lines of $log -----" >&2
            tail -n 40 "$log" >&2
        done
        bash "$HERE/stop_cluster.sh" "$STATE" >&2 || true
    fi
}
trap on_exit EXIT

# /etc/slurm/slurm.conf: move any existing file aside to $BACKUP (beside it, so that it outlives
# temporary folders; never destroyed), install ours; stop_cluster.sh moves it back.
ETC=/etc/slurm
BACKUP="$ETC/slurm.conf.before-cd8exo-test"
if [[ ! -d "$ETC" ]]; then
    mkdir -p "$ETC"
    touch "$STATE/backup/created-etc-slurm"
fi
if head -n 1 "$ETC/slurm.conf" 2>/dev/null | grep -qF "$MARKER"; then
    other="$(head -n 1 "$ETC/slurm.conf" | sed 's/.*state=//')"
    if cluster_alive "$other"; then
        die "$ETC/slurm.conf belongs to another test cluster that is running (state $other); stop it first with tests/slurm/stop_cluster.sh $other"
    fi
    # Left by a test session that was killed before it could stop its cluster: the file is
    # generated (any original is in $BACKUP), so it can go.
    echo "start_cluster.sh: removing $ETC/slurm.conf of the dead test cluster $other" >&2
    rm -f "$ETC/slurm.conf"
fi
if [[ -e "$ETC/slurm.conf" || -L "$ETC/slurm.conf" ]]; then
    if [[ -e "$BACKUP" || -L "$BACKUP" ]]; then
        die "both $ETC/slurm.conf and $BACKUP exist: keep the right one as $ETC/slurm.conf, remove the other, then retry"
    fi
    mv "$ETC/slurm.conf" "$BACKUP"
    touch "$STATE/backup/moved-slurm-conf"
elif [[ -e "$BACKUP" || -L "$BACKUP" ]]; then
    # moved aside by a test session that died before it could put it back: ours to restore
    touch "$STATE/backup/moved-slurm-conf"
fi
cp "$CONF" "$ETC/slurm.conf"
chmod 644 "$ETC/slurm.conf"

# Start a daemon detached (own session, no terminal), in the foreground mode of the daemon
# itself so that $! is the daemon's own pid.
start_daemon() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo $! >"$STATE/pids/$name.pid"
}

mungekey --create --keyfile="$STATE/munge/munge.key" >/dev/null 2>&1 ||
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1 count=1024 status=none
chmod 600 "$STATE/munge/munge.key"
start_daemon munged munged --foreground --force \
    --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/pids/munged.pidfile" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
for _ in $(seq 50); do
    [[ -S "$STATE/munge/munge.socket" ]] && break
    sleep 0.2
done
munge --socket="$STATE/munge/munge.socket" -n </dev/null | unmunge --socket="$STATE/munge/munge.socket" >/dev/null ||
    die "munged does not answer on $STATE/munge/munge.socket"

start_daemon slurmctld slurmctld -D -i -f "$CONF"
start_daemon slurmd slurmd -D -f "$CONF" -N "$HOST"

deadline=$((SECONDS + WAIT_SECONDS))
state=""
while ((SECONDS < deadline)); do
    for name in munged slurmctld slurmd; do
        # a daemon that exited may linger as a zombie, which `kill -0` would still find
        pid="$(cat "$STATE/pids/$name.pid")"
        [[ -n "$(tr -d '\0' <"/proc/$pid/cmdline" 2>/dev/null)" ]] || die "$name exited during start-up"
    done
    state="$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null || true)"
    [[ "$state" == idle ]] && break
    sleep 1
done
[[ "$state" == idle ]] || die "node $HOST not idle after ${WAIT_SECONDS}s (sinfo state: '${state:-no answer}')"

started_ok=1
echo "start_cluster.sh: one-node SLURM cluster up (node $HOST, partition $PARTITION, ports $CTLD_PORT/$SLURMD_PORT)" >&2
echo "$STATE/env"
