#!/usr/bin/env bash
# A real single-node SLURM cluster (slurmctld, slurmd, slurmdbd with MariaDB, munge) from Debian 12's own
# packages, for trying and testing `sparsity-latency study --executor slurm` on one machine. No systemd is
# needed: every daemon is started directly and tracked by its pid file. See docs/slurm.md.
#
#   scripts/slurm-single-node.sh start    install if missing, configure, start all daemons, wait until ready
#   scripts/slurm-single-node.sh check    sinfo, a 2-task job array that must complete, a cancelled job
#   scripts/slurm-single-node.sh status   which daemons are running (exit 0 only when all five are)
#   scripts/slurm-single-node.sh stop     cancel all jobs, stop every daemon, wait until they have exited
#
# State (pid files, logs, spool, state-save, MariaDB data) lives under $SLURM_SINGLE_NODE_DIR
# (default /tmp/sparsity-latency-slurm); the configs are /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf,
# where every SLURM client (sbatch, squeue, sacct, submitit) finds them without any environment variable.
set -euo pipefail

STATE=${SLURM_SINGLE_NODE_DIR:-/tmp/sparsity-latency-slurm}
TIMEOUT=${SLURM_SINGLE_NODE_TIMEOUT:-60}   # seconds to wait for each daemon, and for each check
CLUSTER=sparsity
PARTITION=debug
DB_PORT=3307                                # MariaDB, on 127.0.0.1 only; 3307 so as not to meet a system MySQL
DB_NAME=slurm_acct_db
DB_USER=slurm
SLURM_ETC=/etc/slurm
MARKER="# Written by scripts/slurm-single-node.sh (sparsity-latency); rewritten on every start."
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server)
NODE=$(uname -n)
NODE=${NODE%%.*}

say() { echo "slurm-single-node: $*"; }
die() { echo "slurm-single-node: error: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 start|check|status|stop" >&2
  exit 2
}

# Re-run this script as root (start and stop need root: apt, /etc/slurm, daemons running as root).
need_root() {
  [[ $(id -u) -eq 0 ]] && return 0
  if ! command -v sudo >/dev/null 2>&1; then
    echo "slurm-single-node: '$1' needs root, and sudo is not installed: run it as root" >&2
    exit 2
  fi
  if [[ ! -t 0 ]] && ! sudo -n true 2>/dev/null; then
    echo "slurm-single-node: '$1' needs root, and sudo asks for a password with no terminal to type it in" >&2
    exit 2
  fi
  exec sudo SLURM_SINGLE_NODE_DIR="$STATE" SLURM_SINGLE_NODE_TIMEOUT="$TIMEOUT" "$(readlink -f "$0")" "$@"
}

# alive PID: the process exists and has not exited (a zombie has exited, even if not yet reaped).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != [ZX] ]]
}

# pid_of PIDFILE NAME: print the pid in PIDFILE if a process by that name (exactly) is running with it.
pid_of() {
  local pid comm
  [[ -r $1 ]] || return 1
  read -r pid <"$1" 2>/dev/null || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$2" ]] && alive "$pid" || return 1
  echo "$pid"
}

# wait_for WHAT LOG COMMAND...: run COMMAND every 0.2 s until it succeeds, at most $TIMEOUT seconds.
wait_for() {
  local what=$1 log=$2 end=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      echo "slurm-single-node: error: $what not ready after ${TIMEOUT}s; see $log" >&2
      [[ -f $log ]] && tail -n 5 "$log" | sed 's/^/    /' >&2
      exit 1
    fi
    sleep 0.2
  done
}

# Daemons: name, pid file, log.
MUNGE_PID=$STATE/munge/munged.pid
DB_DIR=$STATE/mariadb
DB_SOCK=$DB_DIR/mariadbd.sock
DB_OWN_PID=$DB_DIR/mariadbd.pid   # written by mariadbd, readable by root and mysql only
DB_PID=$STATE/run/mariadbd.pid     # a copy, readable by everyone (for status)
DBD_PID=$STATE/run/slurmdbd.pid
CTLD_PID=$STATE/run/slurmctld.pid
SLURMD_PID=$STATE/run/slurmd.pid
DAEMONS=("munged:$MUNGE_PID" "mariadbd:$DB_PID" "slurmdbd:$DBD_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID")

# Refresh the readable copy of mariadbd's pid file (root only).
sync_db_pid() {
  local pid
  if pid=$(pid_of "$DB_OWN_PID" mariadbd); then echo "$pid" >"$DB_PID"; fi
}

db() { mariadb --no-defaults --protocol=socket --socket="$DB_SOCK" -uroot "$@"; }

# foreign_config PATH: stop here if PATH exists and was not written by this script (a real cluster's config).
foreign_config() {
  if [[ -f $1 ]] && ! grep -qxF "$MARKER" "$1"; then
    die "$1 exists and was not written by this script; move it away to use the single-node cluster"
  fi
}

# install_text PATH MODE CONTENT: write PATH only if its content differs; return 0 if it was (re)written.
install_text() {
  local path=$1 mode=$2 content=$3
  if [[ -f $path ]] && [[ $(cat "$path") == "$content" ]]; then
    chmod "$mode" "$path"
    return 1
  fi
  foreign_config "$path"
  printf '%s\n' "$content" >"$path.tmp"
  chmod "$mode" "$path.tmp"
  mv -f "$path.tmp" "$path"
}

install_packages() {
  local missing=() p policy_made=0
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    say "packages: installed"
    return
  fi
  local t0=$SECONDS
  # Keep the packages' init scripts from starting their daemons: this script starts them itself.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  {
    apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-unsafe-io "${missing[@]}"
  } >"$STATE/log/apt.log" 2>&1 || {
    ((policy_made)) && rm -f /usr/sbin/policy-rc.d
    tail -n 5 "$STATE/log/apt.log" | sed 's/^/    /' >&2
    die "apt-get install ${missing[*]} failed; see $STATE/log/apt.log"
  }
  ((policy_made)) && rm -f /usr/sbin/policy-rc.d
  say "packages: installed ${missing[*]} in $((SECONDS - t0)) s"
}

start_munge() {
  install -d -o munge -g munge -m 0755 "$STATE/munge" /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    say "munge: created /etc/munge/munge.key"
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  local pid
  if pid=$(pid_of "$MUNGE_PID" munged); then
    say "munged: already running (pid $pid)"
    return
  fi
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    die "a munged not started by this script is running; stop it first"
  fi
  rm -f /run/munge/munge.socket.2.lock
  runuser -u munge -- munged --pid-file="$MUNGE_PID" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
  wait_for munged "$STATE/munge/munged.log" sh -c 'munge -n | unmunge'
  wait_for munged "$STATE/munge/munged.log" pid_of "$MUNGE_PID" munged
  say "munged: started (pid $(cat "$MUNGE_PID"))"
}

start_mariadb() {
  install -d -o mysql -g mysql -m 0755 "$DB_DIR"
  if [[ ! -d $DB_DIR/data/mysql ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR/data" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install-db.log" 2>&1 ||
      die "mariadb-install-db failed; see $STATE/log/mariadb-install-db.log"
    say "mariadb: initialized $DB_DIR/data"
  fi
  local pid
  sync_db_pid
  if pid=$(pid_of "$DB_PID" mariadbd); then
    say "mariadbd: already running (pid $pid)"
  else
    setsid -f mariadbd --no-defaults --user=mysql --datadir="$DB_DIR/data" --socket="$DB_SOCK" \
      --pid-file="$DB_OWN_PID" --log-error="$DB_DIR/mariadbd.log" --bind-address=127.0.0.1 --port="$DB_PORT" \
      --skip-name-resolve --skip-log-bin --innodb-flush-log-at-trx-commit=2 \
      --innodb-buffer-pool-size=1G --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1
    wait_for mariadbd "$DB_DIR/mariadbd.log" db -e 'SELECT 1'
    wait_for mariadbd "$DB_DIR/mariadbd.log" pid_of "$DB_OWN_PID" mariadbd
    sync_db_pid
    say "mariadbd: started (pid $(cat "$DB_PID"), 127.0.0.1:$DB_PORT)"
  fi
  # The password lives here and in slurmdbd.conf (both readable by root only).
  if [[ ! -s $STATE/run/db.pass ]]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE/run/db.pass")
  fi
  local pass
  pass=$(cat "$STATE/run/db.pass")
  db -e "CREATE DATABASE IF NOT EXISTS $DB_NAME;
         CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
         ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
         GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';"
  say "mariadb: database $DB_NAME, user $DB_USER@127.0.0.1"
}

write_configs() {
  local cpus mem_mib pass
  cpus=$(nproc)
  mem_mib=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  mem_mib=$((mem_mib * 95 / 100))   # a bit below the machine's memory, so slurmd never finds less
  pass=$(cat "$STATE/run/db.pass")
  install -d -m 0755 "$SLURM_ETC"

  install_text "$SLURM_ETC/slurmdbd.conf" 600 "$MARKER
# State: $STATE
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$DBD_PID
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$pass
StorageLoc=$DB_NAME" && say "config: wrote $SLURM_ETC/slurmdbd.conf"
  chown root:root "$SLURM_ETC/slurmdbd.conf"

  SLURM_CONF_CHANGED=0
  install_text "$SLURM_ETC/slurm.conf" 644 "$MARKER
# State: $STATE
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
# A requeued job (scontrol requeue, as submitit does on timeout or preemption) may start again after
# cred_expire seconds: 10 instead of the default 120.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: processes are tracked through /proc, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# Jobs share the node by cores and memory; a job that asks for no memory gets DefMemPerCPU per CPU.
SchedulerType=sched/backfill
# Batch jobs are scheduled at once (the default waits up to 3 s to schedule them in bulk), and the whole
# queue, held or requeued jobs included, is looked at every 5 s (default 60 s, backfill 30 s).
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
JobRequeue=1
# Finished jobs leave squeue after MinJobAge seconds; sacct keeps them.
MinJobAge=10
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MailProg=/bin/true
Waittime=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP" && {
    SLURM_CONF_CHANGED=1
    say "config: wrote $SLURM_ETC/slurm.conf (node $NODE, $cpus CPUs, ${mem_mib} MiB, partition $PARTITION)"
  }
  return 0
}

start_slurmdbd() {
  local pid
  if pid=$(pid_of "$DBD_PID" slurmdbd); then
    say "slurmdbd: already running (pid $pid)"
  else
    slurmdbd
    wait_for slurmdbd "$STATE/log/slurmdbd.log" pid_of "$DBD_PID" slurmdbd
    wait_for slurmdbd "$STATE/log/slurmdbd.log" sacctmgr -n show cluster
    say "slurmdbd: started (pid $(cat "$DBD_PID"))"
  fi
  if sacctmgr -n -P show cluster format=Cluster | grep -qxF "$CLUSTER"; then
    say "sacctmgr: cluster $CLUSTER registered"
  else
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    say "sacctmgr: cluster $CLUSTER added"
  fi
}

node_up() { sinfo -h -n "$NODE" -o %T | grep -qE '^(idle|mixed|allocated|completing)$'; }

start_slurm() {
  local pid ctld_started=0
  if pid=$(pid_of "$CTLD_PID" slurmctld); then
    say "slurmctld: already running (pid $pid)"
    if ((SLURM_CONF_CHANGED)); then
      scontrol reconfigure
      say "slurmctld: reconfigured"
    fi
  else
    slurmctld
    wait_for slurmctld "$STATE/log/slurmctld.log" pid_of "$CTLD_PID" slurmctld
    wait_for slurmctld "$STATE/log/slurmctld.log" scontrol ping
    ctld_started=1
    say "slurmctld: started (pid $(cat "$CTLD_PID"))"
  fi
  if pid=$(pid_of "$SLURMD_PID" slurmd); then
    # A slurmd that outlived its slurmctld registers again on SIGHUP instead of at the next ping.
    ((ctld_started)) && kill -HUP "$pid"
    say "slurmd: already running (pid $pid)"
  else
    slurmd
    wait_for slurmd "$STATE/log/slurmd.log" pid_of "$SLURMD_PID" slurmd
    say "slurmd: started (pid $(cat "$SLURMD_PID"))"
  fi
  wait_for "node $NODE (idle in sinfo)" "$STATE/log/slurmd.log" node_up
  say "node $NODE: $(sinfo -h -n "$NODE" -o %T)"
}

cmd_start() {
  local t0=$SECONDS
  if [[ -e $STATE && ! -O $STATE ]]; then
    die "$STATE exists and is not owned by root; remove it or set SLURM_SINGLE_NODE_DIR"
  fi
  foreign_config "$SLURM_ETC/slurm.conf"
  foreign_config "$SLURM_ETC/slurmdbd.conf"
  install -d -m 0755 "$STATE" "$STATE/run" "$STATE/log" "$STATE/slurmctld" "$STATE/slurmd"
  install_packages
  start_munge
  start_mariadb
  write_configs
  start_slurmdbd
  start_slurm
  say "start: cluster $CLUSTER up in $((SECONDS - t0)) s (partition $PARTITION, config $SLURM_ETC/slurm.conf)"
}

# stop_daemon NAME PIDFILE: SIGTERM, wait for the process to exit, SIGKILL after $TIMEOUT seconds.
stop_daemon() {
  local name=$1 pidfile=$2 pid end
  if ! pid=$(pid_of "$pidfile" "$name"); then
    say "$name: not running"
    rm -f "$pidfile"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  end=$((SECONDS + TIMEOUT))
  while alive "$pid" && ((SECONDS < end)); do sleep 0.1; done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
    say "$name: killed (pid $pid did not exit on SIGTERM within ${TIMEOUT}s)"
  else
    say "$name: stopped (pid $pid)"
  fi
  rm -f "$pidfile"
  STOPPED+=("$pid")
}

cmd_stop() {
  local jobs end pid ours=0
  STOPPED=()
  if pid_of "$CTLD_PID" slurmctld >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      end=$((SECONDS + TIMEOUT))
      while squeue -h -t all -o %T 2>/dev/null |
        grep -qvE '^(CANCELLED|COMPLETED|FAILED|TIMEOUT|PREEMPTED|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)$' &&
        ((SECONDS < end)); do sleep 0.2; done
      say "jobs: cancelled $jobs"
    fi
  fi
  pid_of "$SLURMD_PID" slurmd >/dev/null && ours=1
  stop_daemon slurmd "$SLURMD_PID"
  # Job steps outlive slurmd by design; after the cancel above none should be left.
  if ((ours)) && pgrep -x slurmstepd >/dev/null; then
    end=$((SECONDS + 10))
    while pgrep -x slurmstepd >/dev/null && ((SECONDS < end)); do sleep 0.2; done
    if pgrep -x slurmstepd >/dev/null; then
      pkill -KILL -x slurmstepd || true
      say "slurmstepd: killed leftover job steps"
    fi
  fi
  stop_daemon slurmctld "$CTLD_PID"
  stop_daemon slurmdbd "$DBD_PID"
  [[ -d $STATE/run ]] && sync_db_pid
  stop_daemon mariadbd "$DB_PID"
  stop_daemon munged "$MUNGE_PID"
  # Exited daemons stay in the process table until PID 1 reaps them; wait for that too, so that nothing
  # named slurm*, munged or mariadbd is listed once stop returns.
  end=$((SECONDS + 10))
  for pid in "${STOPPED[@]}"; do
    while [[ -d /proc/$pid ]] && ((SECONDS < end)); do sleep 0.1; done
  done
  say "stop: all daemons stopped (state kept in $STATE)"
}

cmd_status() {
  local d name pidfile pid down=0
  for d in "${DAEMONS[@]}"; do
    name=${d%%:*}
    pidfile=${d#*:}
    if pid=$(pid_of "$pidfile" "$name"); then
      say "$name: running (pid $pid)"
    else
      say "$name: not running"
      down=1
    fi
  done
  if ((down == 0)); then
    say "node $NODE: $(sinfo -h -n "$NODE" -o %T 2>/dev/null || echo unknown), partition $PARTITION, config $SLURM_ETC/slurm.conf"
  fi
  return "$down"
}

# sacct_states JOBID: the State of each allocation of JOBID (array tasks on lines of their own).
sacct_states() { sacct -j "$1" -X -n -P -o State 2>/dev/null; }

cmd_check() {
  local id states end out
  command -v sbatch >/dev/null 2>&1 || die "check: sbatch not found; run '$0 start' first"
  sinfo -h -p "$PARTITION" -o '%P %a %D %T' >/dev/null 2>&1 ||
    die "check: sinfo fails; is the cluster up? ('$0 status')"
  say "check: sinfo: $(sinfo -h -p "$PARTITION" -o '%P %a nodes=%D %T %N' | paste -sd ';')"
  tmp=$(mktemp -d)   # global: the EXIT trap reads it after cmd_check has returned
  trap 'rm -rf "$tmp"' EXIT

  # 1. a two-task job array, both tasks COMPLETED, each wrote its own index.
  # shellcheck disable=SC2016
  id=$(sbatch --parsable -p "$PARTITION" -J sl-check-array --array=0-1 -t 2 --chdir="$tmp" \
    --output="$tmp/%A_%a.out" --wrap 'echo $SLURM_ARRAY_TASK_ID') || die "check: sbatch --array failed"
  id=${id%%;*}
  end=$((SECONDS + TIMEOUT))
  while :; do
    states=$(sacct_states "$id" | sort | paste -sd ' ')
    [[ $states == "COMPLETED COMPLETED" ]] && break
    if [[ $(wc -w <<<"$states") -eq 2 && ! $states =~ (PENDING|RUNNING|REQUEUED|COMPLETING|CONFIGURING) ]]; then
      die "check: job array $id ended as: $states"
    fi
    ((SECONDS < end)) || die "check: job array $id not COMPLETED after ${TIMEOUT}s (sacct: ${states:-nothing})"
    sleep 0.5
  done
  out=$(cat "$tmp/${id}_0.out" "$tmp/${id}_1.out" 2>/dev/null | paste -sd ' ')
  [[ $out == "0 1" ]] || die "check: job array $id wrote '$out', expected '0 1'"
  say "check: job array $id: 2 tasks COMPLETED, output '$out'"

  # 2. a running job, cancelled, is CANCELLED in sacct.
  id=$(sbatch --parsable -p "$PARTITION" -J sl-check-cancel -t 5 --chdir="$tmp" --output=/dev/null \
    --wrap 'sleep 300') || die "check: sbatch failed"
  id=${id%%;*}
  end=$((SECONDS + TIMEOUT))
  until [[ $(squeue -h -j "$id" -o %T 2>/dev/null) == RUNNING ]]; do
    ((SECONDS < end)) || { scancel "$id" 2>/dev/null; die "check: job $id not RUNNING after ${TIMEOUT}s"; }
    sleep 0.2
  done
  scancel "$id" || die "check: scancel $id failed"
  end=$((SECONDS + TIMEOUT))
  until [[ $(sacct_states "$id") == CANCELLED* ]]; do
    ((SECONDS < end)) || die "check: job $id not CANCELLED in sacct after ${TIMEOUT}s (sacct: $(sacct_states "$id"))"
    sleep 0.5
  done
  say "check: job $id: RUNNING, scancel, sacct: $(sacct_states "$id")"
  say "check: ok"
}

[[ $# -eq 1 ]] || usage
case $1 in
  start) need_root start; cmd_start ;;
  stop) need_root stop; cmd_stop ;;
  status) cmd_status ;;
  check) cmd_check ;;
  *) usage ;;
esac
