#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for `hydra/launcher=slurm` tests and trials.
#
#   bash scripts/local_slurm.sh          # install (Debian slurm-wlm parts + munge, as root) and start; idempotent
#   bash scripts/local_slurm.sh status   # sinfo / squeue
#   bash scripts/local_slurm.sh stop     # stop the daemons this script started (by their pid files)
#
# What it sets up: munged, slurmctld and slurmd on loopback; one node (this host, its CPUs and memory
# as `slurmd -C` reports them), one partition `local` (default), no accounting (submitit then prints
# harmless "Bypassing sacct error" warnings), no cgroups (proctrack/linuxproc, task/none), requeue
# allowed. Configuration in /etc/slurm/slurm.conf (written only if absent or written by this script),
# logs in /var/log/slurm-local/.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by slimgan-pl scripts/local_slurm.sh"
LOGS=/var/log/slurm-local
RUN=/run/slurm-local
SPOOL=/var/spool/slurm-local
NODE=$(hostname -s)

say() { echo "local_slurm: $*" >&2; }
die() { say "$*"; exit 1; }

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1; }

running() {  # pid file -> true if that process is alive
    [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    [[ $(id -u) -eq 0 ]] || die "SLURM is not installed and this is not root: run as root, or \
'apt-get install slurmctld slurmd slurm-client munge' (Debian's slurm-wlm parts)"
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get (not Debian/Ubuntu)"
    say "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
             slurmctld slurmd slurm-client munge >/dev/null; } || die "apt-get install failed"
}

write_conf() {
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        say "$CONF exists and was not written by this script: using it as it is"
        return
    fi
    local hw
    hw=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$NODE NodeAddr=127.0.0.1/")
    mkdir -p /etc/slurm
    cat > "$CONF.tmp" <<EOF
$MARK
ClusterName=slimgan-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10   # a requeued job may start again after 10 s (default 120)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=15
MinJobAge=600
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmdSpoolDir=$SPOOL/slurmd
StateSaveLocation=$SPOOL/slurmctld
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$hw State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if ! cmp -s "$CONF.tmp" "$CONF" 2>/dev/null; then
        mv "$CONF.tmp" "$CONF"
        RECONFIGURED=1
    else
        rm -f "$CONF.tmp"
    fi
}

start() {
    install_packages
    [[ $(id -u) -eq 0 ]] || { node_state | grep -q idle && { say "SLURM is up (not root: not touching it)"; exit 0; }
                              die "SLURM is installed but not running, and starting it needs root"; }
    RECONFIGURED=0
    write_conf
    mkdir -p "$LOGS" "$RUN" "$SPOOL/slurmd" "$SPOOL/slurmctld"

    # munge: the key comes with the Debian package; create one if missing
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -f /etc/munge/munge.key ]]; then
        (command -v mungekey >/dev/null && mungekey --create) || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "starting munged"
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
        for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    fi

    if [[ $RECONFIGURED -eq 1 ]]; then  # a changed config: restart what this script runs
        for d in slurmd slurmctld; do running "$RUN/$d.pid" && kill "$(cat "$RUN/$d.pid")" && sleep 1; done
    fi
    if ! running "$RUN/slurmctld.pid"; then
        say "starting slurmctld"
        /usr/sbin/slurmctld -f "$CONF"
    fi
    if ! running "$RUN/slurmd.pid"; then
        say "starting slurmd"
        /usr/sbin/slurmd -f "$CONF" -N "$NODE"
    fi

    for i in $(seq 60); do
        state=$(node_state || true)
        case $state in
            idle|mix|alloc) say "SLURM is up: node $NODE $state, partition local"; return 0 ;;
            down*|drain*|drng*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "node $NODE did not become idle (state: ${state:-none}); see $LOGS/"
}

stop() {
    for d in slurmd slurmctld; do
        if running "$RUN/$d.pid"; then say "stopping $d"; kill "$(cat "$RUN/$d.pid")"; fi
    done
    if running /run/munge/munged.pid; then say "stopping munged"; kill "$(cat /run/munge/munged.pid)"; fi
}

case ${1:-start} in
    start) start ;;
    stop) stop ;;
    status) sinfo; squeue ;;
    *) die "usage: $0 [start|stop|status]" ;;
esac
