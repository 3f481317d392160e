#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on 127.0.0.1, from Debian's packages
# (`apt-get install slurm-wlm munge`), for running bps/slurm.yaml on one machine.
#
#   bps/slurm_cluster.sh start DIR   # prints `export SLURM_CONF=DIR/slurm.conf`
#   bps/slurm_cluster.sh stop DIR
#
# Everything lives in DIR: slurm.conf, the munge key and socket, the daemons'
# state, logs and pid files; nothing under /etc is read or written, so it
# coexists with a system Slurm or munge.  The daemons are a munged, a
# slurmctld and a slurmd (node `isrinject1`, the CPUs and memory `slurmd -C`
# finds, partition `debug`), with ProctrackType=proctrack/linuxproc and
# TaskPlugin=task/none: no cgroups, so it also runs in containers.  There is
# no slurmdbd: `sacct --completion` (JobCompType=jobcomp/filetxt) lists the
# finished jobs.  Run as root (SlurmUser=root) or as the user that submits.
# Ports: $SLURMCTLD_PORT and $SLURMD_PORT, free ones when unset.
# `stop` cancels the cluster's jobs and ends the three daemons by their pid files.
set -euo pipefail
# Debian installs the daemons in /usr/sbin, which a user's PATH may lack.
export PATH=$PATH:/usr/sbin:/sbin

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
conf=$dir/slurm.conf
node=isrinject1

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Wait up to $1 seconds for the command "${@:2}" to succeed.
wait_for() {
    local timeout=$1; shift
    local end=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $end ]; then return 1; fi
        sleep 0.5
    done
}

stop_pid_file() {
    local pid_file=$1 pid
    [ -s "$pid_file" ] || return 0
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        wait_for 20 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
}

node_idle() { [ "$(sinfo -h -n "$node" -o %T 2>/dev/null)" = idle ]; }

start() {
    for tool in munged mungekey slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || { echo "$0: $tool not found; apt-get install slurm-wlm munge" >&2; exit 1; }
    done
    if [ -s "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        echo "$0: a cluster is already running in $dir" >&2; exit 1
    fi
    mkdir -p "$dir/munge" "$dir/ctld" "$dir/spool"
    # munged insists on a private key and a socket directory everyone can enter.
    chmod 755 "$dir" "$dir/munge"
    [ -s "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key"
    munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/socket" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
    local user ctld_port d_port hardware
    user=$(id -un)
    ctld_port=${SLURMCTLD_PORT:-$(free_port)}
    d_port=${SLURMD_PORT:-$(free_port)}
    # CPUs, sockets, cores, threads and RealMemory of this machine, as slurmd sees them.
    hardware=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
    cat > "$conf" <<EOF
# Written by bps/slurm_cluster.sh: a single-node cluster on 127.0.0.1.
ClusterName=isrinject
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) $hardware State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$conf
    slurmctld -f "$conf"
    slurmd -f "$conf" -N "$node"
    if ! wait_for 60 node_idle; then
        echo "$0: node $node did not become idle; logs follow" >&2
        tail -n 20 "$dir/munge/munged.log" "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
        stop
        exit 1
    fi
    echo "export SLURM_CONF=$conf"
}

stop() {
    export SLURM_CONF=$conf
    if [ -s "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        scancel --full --cluster=isrinject --user="$(id -un)" 2>/dev/null || true
        # Let slurmd end the jobs' processes before it stops itself.
        wait_for 20 bash -c '[ -z "$(squeue -h -o %i 2>/dev/null)" ]' || true
    fi
    stop_pid_file "$dir/slurmd.pid"
    stop_pid_file "$dir/slurmctld.pid"
    stop_pid_file "$dir/munge/munged.pid"
}

case $action in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
