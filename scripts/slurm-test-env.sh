#!/usr/bin/env bash
# Starts a private Slurm for cohort's Slurm tests (crates/slurm/tests/slurm.rs).
#
#   scripts/slurm-test-env.sh [--no-install]   start it (or keep the one running)
#   scripts/slurm-test-env.sh --stop           stop the daemons this script started
#
# - Installs Debian's slurm-wlm and munge with apt-get when they are missing, we are
#   root and --no-install was not given (CI: a fresh Debian 12 machine, as root).
# - Starts munged (the system's key /etc/munge/munge.key, the default socket) unless
#   it already answers.
# - Writes slurm.conf in $COHORT_TEST_SLURM_DIR (default /tmp/cohort-slurm): one
#   controller on 127.0.0.1:$COHORT_TEST_SLURM_PORT (default 16817) and two nodes,
#   cohort1 and cohort2, both this machine (two slurmd processes, `slurmd -N NAME`,
#   each on its own port), 8 CPUs each whatever the machine has
#   (SlurmdParameters=config_overrides), one partition `cohort` with
#   OverSubscribe=FORCE so that concurrent tests share the CPUs; state, spool and logs
#   under that directory; proctrack/linuxproc, task/none, select/cons_tres (it runs
#   as root in a container, without cgroups).
# - Starts slurmctld and the two slurmd, and waits (polling, with a deadline) until
#   sinfo shows both nodes idle.
# - Makes sure this machine's host name resolves (workers announce it; appends it to
#   /etc/hosts as 127.0.1.1 if it does not).
# - Writes $DIR/env (SLURM_CONF=..., NODES=..., PARTITION=...) once the cluster runs
#   a job.
#
# Idempotent: when the daemons of an earlier run still answer with the same
# configuration, they are kept. Exits 0 and prints "skipped: ..." when Slurm cannot be
# had (the tests then skip as well), except under CI (CI set and not false/0, as
# .ci/run sets it): there it exits 1.
set -euo pipefail

DIR=${COHORT_TEST_SLURM_DIR:-/tmp/cohort-slurm}
PORT=${COHORT_TEST_SLURM_PORT:-16817}
NODES=(cohort1 cohort2)
CPUS=8
PARTITION=cohort
INSTALL=1
STOP=0
case "${1:-}" in
    --no-install) INSTALL=0 ;;
    --stop) STOP=1 ;;
    "") ;;
    *) echo "usage: $0 [--no-install | --stop]" >&2; exit 2 ;;
esac

skip() {
    case "${CI:-}" in
        "" | false | 0) echo "skipped: $*"; exit 0 ;;
        *) echo "error: $* (CI is set, so the Slurm tests must run)" >&2; exit 1 ;;
    esac
}

# Kills the process whose pid is in file $1, if it runs, and waits (bounded) for it.
stop_pidfile() {
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

if [ "$STOP" = 1 ]; then
    for n in "${NODES[@]}"; do stop_pidfile "$DIR/slurmd-$n.pid"; done
    stop_pidfile "$DIR/slurmctld.pid"
    rm -f "$DIR/env"
    echo "Slurm for tests stopped (munged, shared with the system, is left running)"
    exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # The packages' own service start fails without systemd; that is fine, this
        # script starts the daemons itself.
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    fi
fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
    || ! command -v munged >/dev/null 2>&1 || ! command -v srun >/dev/null 2>&1; then
    skip "no Slurm (install slurm-wlm and munge, or run as root to let this script do it)"
fi
if [ "$(id -u)" != 0 ]; then
    skip "the test Slurm runs slurmd as root (it starts jobs as their users); not root"
fi

# --- munge -----------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    [ -f /etc/munge/munge.key ] || {
        if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile=/etc/munge/munge.key
        else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
    }
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 755 /run/munge
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged
    else
        munged --force
    fi
    for _ in $(seq 1 100); do munge_ok && break; sleep 0.1; done
    munge_ok || { echo "munged does not answer" >&2; exit 1; }
fi

# --- configuration -----------------------------------------------------------------
HOST=$(hostname)
# Workers bound to all interfaces announce this host name, which the driver resolves:
# it must resolve (containers and Debian put it in /etc/hosts; add it if not).
if ! getent hosts "$HOST" >/dev/null 2>&1; then
    echo "127.0.1.1 $HOST # added by cohort's scripts/slurm-test-env.sh" >> /etc/hosts
    echo "note: $HOST did not resolve; added it to /etc/hosts as 127.0.1.1"
fi
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
mkdir -p "$DIR/state" "$DIR/spool"
chmod 755 "$DIR"
CONF="$DIR/slurm.conf"
NEW="$DIR/slurm.conf.new"
{
    cat <<CONF
# Written by cohort's scripts/slurm-test-env.sh: a private test cluster on this machine.
ClusterName=cohort
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=5
KillWait=5
MessageTimeout=10
CONF
    i=0
    for n in "${NODES[@]}"; do
        echo "NodeName=$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((PORT + 1 + i)) CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN"
        i=$((i + 1))
    done
    echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
} > "$NEW"
export SLURM_CONF=$CONF

alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
all_alive() {
    alive "$DIR/slurmctld.pid" || return 1
    for n in "${NODES[@]}"; do alive "$DIR/slurmd-$n.pid" || return 1; done
}
# Node states, one "NAME STATE" a line.
states() { timeout 10 sinfo -h -N -p "$PARTITION" -o '%N %t' 2>/dev/null | sort -u; }
all_idle() {
    local s
    s=$(states) || return 1
    for n in "${NODES[@]}"; do
        grep -Eq "^$n (idle|mix|alloc)\$" <<<"$s" || return 1
    done
}

if [ -f "$CONF" ] && cmp -s "$CONF" "$NEW" && all_alive && all_idle && [ -f "$DIR/env" ]; then
    rm -f "$NEW"
    echo "Slurm for tests already running ($DIR; nodes ${NODES[*]})"
    exit 0
fi

# (Re)start everything with the new configuration.
for n in "${NODES[@]}"; do stop_pidfile "$DIR/slurmd-$n.pid"; done
stop_pidfile "$DIR/slurmctld.pid"
mv "$NEW" "$CONF"
rm -f "$DIR/env"
# A fresh controller state: no jobs or node states from an earlier configuration.
rm -rf "${DIR:?}/state" && mkdir -p "$DIR/state"
slurmctld -f "$CONF" -c
for n in "${NODES[@]}"; do
    mkdir -p "$DIR/spool/$n"
    slurmd -f "$CONF" -N "$n"
done

deadline=$((SECONDS + 60))
until all_idle; do
    if [ $SECONDS -ge $deadline ]; then
        echo "the test Slurm did not come up; sinfo says:" >&2
        sinfo -N -l >&2 || true
        tail -n 30 "$DIR/slurmctld.log" >&2 || true
        for n in "${NODES[@]}"; do tail -n 30 "$DIR/slurmd-$n.log" >&2 || true; done
        exit 1
    fi
    # Nodes that came up down (an unclean earlier stop) are put back in service.
    for n in $(states | awk '$2 ~ /^(down|drain|drng|fail)/ {print $1}'); do
        scontrol update nodename="$n" state=resume 2>/dev/null || true
    done
    sleep 0.2
done

# A job on each node proves the whole path (controller, slurmd, munge credentials).
if ! out=$(timeout 60 srun -N 2 -n 2 --label hostname 2>&1); then
    echo "a test job failed: $out" >&2
    exit 1
fi
cat > "$DIR/env" <<ENV
SLURM_CONF=$CONF
NODES=${NODES[*]}
PARTITION=$PARTITION
CPUS=$CPUS
ENV
echo "Slurm for tests running ($DIR; nodes ${NODES[*]}; SLURM_CONF=$CONF)"
