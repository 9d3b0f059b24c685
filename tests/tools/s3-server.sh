#!/usr/bin/env bash
# s3-server.sh - a throw-away S3 server for tests and CI.
#
# Runs Ceph's RADOS Gateway (radosgw, a production S3 implementation) on top of a
# one-host Ceph cluster (one monitor, one in-memory OSD, no manager), everything
# under one directory and bound to 127.0.0.1 only. Needs the Debian packages
# ceph-mon ceph-osd radosgw ceph-common uuid-runtime (Ceph 16.2), curl, python3,
# and /usr/bin/aws (Debian awscli 2.x) for the "aws" and "mkbucket" commands.
# Does not need root: nothing is written outside DIR and no port is privileged.
#
# Usage:
#   s3-server.sh start DIR          create and start a server in DIR (absent or empty);
#                                   prints the endpoint URL as the last line of stdout
#                                   and writes it to DIR/endpoint
#   s3-server.sh stop DIR           stop the server started in DIR (idempotent)
#   s3-server.sh mkbucket DIR NAME  create bucket NAME with /usr/bin/aws
#   s3-server.sh aws DIR ARGS...    run /usr/bin/aws ARGS against the server with the test keys
#
# Environment:
#   S3_SERVER_MEMSTORE_BYTES  capacity of the in-memory OSD (default 4 GiB; RAM is only
#                             used for what is actually stored)
#   S3_SERVER_TIMEOUT         seconds to wait for the server to become ready (default 60)
#
# Test credentials (fixed, also used by tests/RegistryDR.Tests/Infrastructure/CephS3Server.cs):
#   access key registrydr-test-access, secret key registrydr-test-secret-0123456789abcdef,
#   region us-east-1, path-style addressing.
#
# Files in DIR: ceph.conf, keyring, endpoint, daemons.pids, run/*.pid, log/*.log (daemon
# logs), log/*.out (daemon stdout/stderr), log/setup.log (output of the setup commands).

set -euo pipefail

readonly ACCESS_KEY=registrydr-test-access
readonly SECRET_KEY=registrydr-test-secret-0123456789abcdef
readonly REGION=us-east-1
# The Debian awscli 2.x. The first "aws" on PATH may be an unrelated older 1.x.
readonly AWS_BIN=/usr/bin/aws
readonly RGW_USER=registrydr-test

me=$(basename -- "$0")

usage() {
    cat >&2 <<EOF
usage: $me start DIR
       $me stop DIR
       $me mkbucket DIR NAME
       $me aws DIR AWS-CLI-ARGS...
EOF
    exit 2
}

die() {
    echo "$me: $*" >&2
    exit 1
}

log() {
    printf '%s [%s] %s\n' "$me" "$(date +%H:%M:%S.%3N)" "$*"
}

# Absolute path of DIR without requiring it to exist.
abs_dir() {
    realpath -m -- "$1"
}

# The ceph tools expand $name and friends in ceph.conf, and the file format gives
# meaning to '#', ';', '[', ']' and whitespace, so keep DIR plain.
check_dir_name() {
    local dir=$1
    [[ $dir =~ ^[A-Za-z0-9._/+:@-]+$ ]] ||
        die "DIR must contain only letters, digits and ._/+:@- : $dir"
    # Admin sockets live in DIR/run and a Unix socket path is limited to 107 bytes;
    # command-line tools use names like ceph-client.admin.<pid>.<number>.asok.
    if ((${#dir} > 50)); then
        echo "$me: warning: DIR is long (${#dir} chars); admin sockets may fail to bind" >&2
    fi
}

# Prints N distinct free TCP ports on 127.0.0.1. All sockets are held open until
# every port has been picked so the kernel cannot hand out the same port twice;
# the ports come from the ephemeral range, away from the 6800-7300 range the OSD uses.
free_ports() {
    local py=python3
    [[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
    "$py" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# ---------------------------------------------------------------- stop

# True if PID is a live process whose command line has our ceph.conf as an argument:
# guards against stale pid files whose pid now belongs to another process. A zombie has
# an empty command line and counts as gone.
is_ours() {
    local pid=$1 conf=$2 arg
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    while IFS= read -r -d '' arg; do
        [[ $arg == "$conf" ]] && return 0
    done <"/proc/$pid/cmdline" 2>/dev/null
    return 1
}

# Keeps the pids of PIDS (global array) that are still ours, waiting up to TICKS (global,
# tenths of a second, shared by all calls of one stop) for them to go away.
wait_gone() {
    local conf=$1 pid
    while :; do
        local -a still=()
        for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
            is_ours "$pid" "$conf" && still+=("$pid")
        done
        PIDS=("${still[@]+"${still[@]}"}")
        ((${#PIDS[@]} && TICKS > 0)) || return 0
        sleep 0.1
        TICKS=$((TICKS - 1))
    done
}

# SIGTERM to PIDS, then wait for them within the remaining TICKS.
terminate() {
    local conf=$1
    ((${#PIDS[@]})) || return 0
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    wait_gone "$conf"
}

stop_dir() {
    local dir=$1 conf=$1/ceph.conf f pid name
    local -a entries=() gateways=() osds=() monitors=() survivors=()
    local -A seen=()
    [[ -d $dir ]] || return 0

    # Read every pid FIRST: the daemons delete their pid files when they get SIGTERM.
    # daemons.pids is the script's own record of what it launched ("PID NAME" lines), for
    # a daemon that does not write a pid file in the foreground (radosgw) or died early.
    for f in "$dir"/run/*.pid; do
        [[ -f $f ]] || continue
        read -r pid <"$f" || true
        entries+=("$pid $(basename -- "$f" .pid)")
    done
    if [[ -f $dir/daemons.pids ]]; then
        while read -r pid name; do
            entries+=("$pid $name")
        done <"$dir/daemons.pids"
    fi

    for f in "${entries[@]+"${entries[@]}"}"; do
        read -r pid name <<<"$f"
        [[ -n ${pid:-} && -z ${seen[$pid]:-} ]] || continue
        seen[$pid]=1
        is_ours "$pid" "$conf" || continue
        case $name in
        mon.*) monitors+=("$pid") ;;
        osd.*) osds+=("$pid") ;;
        *) gateways+=("$pid") ;;
        esac
    done

    # Stop in the reverse order of start, each layer while the ones below still run:
    # radosgw's shutdown does RADOS operations (unwatching its control objects) that hang
    # until its 120 s alarm if the OSD is already gone, and on SIGTERM the OSD tells the
    # monitor it is going down and waits up to 5 s (osd_mon_shutdown_timeout) for an answer.
    # At most ~10 s of graceful shutdown in all, then SIGKILL for whatever is left.
    TICKS=100
    local group
    for group in gateways osds monitors; do
        local -n members=$group
        PIDS=("${members[@]+"${members[@]}"}")
        unset -n members
        terminate "$conf"
        survivors+=("${PIDS[@]+"${PIDS[@]}"}")
    done
    PIDS=("${survivors[@]+"${survivors[@]}"}")
    TICKS=0
    wait_gone "$conf"
    ((${#PIDS[@]})) || return 0

    echo "$me: still running after SIGTERM, sending SIGKILL: ${PIDS[*]}" >&2
    kill -KILL "${PIDS[@]}" 2>/dev/null || true
    TICKS=50
    wait_gone "$conf"
    ((${#PIDS[@]})) || return 0
    die "could not stop: ${PIDS[*]}"
}

cmd_stop() {
    (($# == 1)) || usage
    stop_dir "$(abs_dir "$1")"
}

# ---------------------------------------------------------------- start

# State of the start command, used by the failure handler.
START_DIR=
START_OK=0

on_start_exit() {
    local rc=$?
    ((START_OK)) && return 0
    ((rc)) || rc=1
    [[ -n $START_DIR ]] || exit "$rc"
    {
        echo "$me: start FAILED in $START_DIR (exit $rc)"
        local f
        for f in "$START_DIR"/log/setup.log "$START_DIR"/log/*.out \
            "$START_DIR"/log/mon.a.log "$START_DIR"/log/osd.0.log "$START_DIR"/log/client.rgw.a.log; do
            [[ -s $f ]] || continue
            echo "----- tail of $f"
            tail -n 25 -- "$f"
        done
        echo "----- stopping what was started"
    } >&2
    stop_dir "$START_DIR" || true
    exit "$rc"
}

# Runs a setup command with its output appended to log/setup.log.
run() {
    echo "+ $*" >>"$START_DIR/log/setup.log"
    "$@" >>"$START_DIR/log/setup.log" 2>&1
}

# The ceph command-line tool. --connect-timeout keeps a dead monitor from hanging it
# for the default 300 s (it retries until then, so it also waits for a starting monitor).
ceph_cli() {
    timeout 60 ceph -c "$START_DIR/ceph.conf" --connect-timeout 30 "$@"
}

# Starts a daemon in the foreground (-f: no fork, so $! is its pid), in its own session
# (setsid: not tied to the caller's terminal or process group), with no inherited
# stdin/stdout/stderr (a caller reading our output through pipes must see EOF when this
# script exits, not when the daemons do). As async commands of a non-interactive shell are
# not process group leaders, setsid does not fork, so $! is the daemon itself.
launch() {
    local name=$1
    shift
    setsid "$@" -f </dev/null >>"$START_DIR/log/$name.out" 2>&1 &
    echo "$! $name" >>"$START_DIR/daemons.pids"
}

# Fails if a daemon launched by this script has exited.
check_daemons() {
    local pid name
    while read -r pid name; do
        is_ours "$pid" "$START_DIR/ceph.conf" || die "$name (pid $pid) exited during start-up"
    done <"$START_DIR/daemons.pids"
}

write_conf() {
    local dir=$1 fsid=$2 mon_v2=$3 mon_v1=$4 rgw_port=$5 memstore_bytes=$6
    # \$name, \$cluster, \$channel are Ceph metavariables, expanded by Ceph, not by bash.
    cat >"$dir/ceph.conf" <<EOF
# Generated by tests/tools/s3-server.sh: a one-host throw-away cluster on 127.0.0.1.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]
# Bind every daemon to loopback only, IPv4 only.
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false

# Keep every file under DIR: the defaults point to /etc/ceph, /var/lib/ceph,
# /var/run/ceph and /var/log/ceph, which would collide between servers (and need root).
keyring = $dir/keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
mon cluster log file = $dir/log/\$cluster.\$channel.log
crash dir = $dir/crash
mon data = $dir/\$name
osd data = $dir/\$name

# cephx as in production. Every client is new, so there is no reason to allow the old
# insecure global_id reclaim (and leaving it allowed raises a health warning).
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false

# One OSD: pools with a single copy, and CRUSH placing copies across OSDs, not hosts.
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0

# Few placement groups (radosgw creates about 7 pools): less to create and peer at start.
# The autoscaler is a manager module and there is no manager; keep it off.
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000

# The monitor warns below 30% and shuts itself down below 5% free space on the disk
# holding its data; a CI runner's disk can be that full, and the data here is tiny.
mon data avail warn = 2
mon data avail crit = 1

# Paxos proposes at most every "paxos propose interval" (default 1 s) and every step of
# the start-up (OSD creation, boot, pool creation, PG creation...) waits for a proposal:
# with the defaults the server is ready after ~13 s, with these after a few seconds.
paxos propose interval = 0.01
paxos min wait = 0.001

# Clients (ceph, radosgw-admin, radosgw) give up instead of retrying for 5 minutes.
client mount timeout = 30

[osd]
# Objects in RAM: nothing to format, fast, and gone when the OSD stops. The device size
# is only a capacity limit; memory is used for what is stored.
osd objectstore = memstore
memstore device bytes = $memstore_bytes
keyring = $dir/\$name/keyring

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/\$name
# Enables virtual-host style requests (bucket.localhost); path-style always works.
rgw dns name = localhost
# No background lifecycle processing. Its workers run at start-up when the clock is in
# rgw_lifecycle_work_time (00:00-06:00 UTC), contend for the same shard locks, and a worker
# that loses sleeps 5 s without noticing a shutdown: radosgw then took 3-9 s to stop instead
# of well under a second. Lifecycle rules can still be stored and read; they are just not
# applied (by default they would only be applied once a day anyway).
rgw enable lc threads = false
EOF
}

cmd_start() {
    (($# == 1)) || usage
    local dir
    dir=$(abs_dir "$1")
    check_dir_name "$dir"
    if [[ -e $dir ]]; then
        [[ -d $dir ]] || die "not a directory: $dir"
        [[ -z $(ls -A -- "$dir") ]] || die "directory not empty: $dir"
    fi

    local memstore_bytes=${S3_SERVER_MEMSTORE_BYTES:-4294967296}
    local timeout_s=${S3_SERVER_TIMEOUT:-60}
    [[ $memstore_bytes =~ ^[0-9]+$ ]] || die "S3_SERVER_MEMSTORE_BYTES must be a number of bytes"
    [[ $timeout_s =~ ^[0-9]+$ ]] || die "S3_SERVER_TIMEOUT must be a number of seconds"

    local tool
    for tool in ceph ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool uuidgen curl setsid timeout; do
        command -v "$tool" >/dev/null || die "missing command: $tool (install ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl)"
    done

    START_DIR=$dir
    trap on_start_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    mkdir -p "$dir"/{run,log,crash,mon.a,osd.0,client.rgw.a}
    : >"$dir/daemons.pids"
    # Do not let the caller's Ceph settings leak in.
    unset CEPH_ARGS CEPH_CONF

    local ports mon_v2 mon_v1 rgw_port fsid
    ports=$(free_ports 3)
    read -r mon_v2 mon_v1 rgw_port <<<"$ports"
    fsid=$(uuidgen)
    write_conf "$dir" "$fsid" "$mon_v2" "$mon_v1" "$rgw_port" "$memstore_bytes"
    local conf=$dir/ceph.conf
    log "starting in $dir (mon ports $mon_v2/$mon_v1, S3 port $rgw_port)"

    # Keys: the monitor's own, the administrator's (for ceph and radosgw-admin) and the
    # gateway's. All of them are in the keyring given to "ceph-mon --mkfs", which imports
    # them with their caps into the new cluster, so no "ceph auth" call is needed later.
    run ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *'
    run ceph-authtool "$dir/keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
    run ceph-authtool "$dir/keyring" --gen-key -n client.rgw.a \
        --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'

    # Monitor: an initial monmap with our one monitor on both protocols (v2, v1 for old clients).
    run monmaptool --create --fsid "$fsid" \
        --addv a "[v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]" "$dir/monmap"
    run ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
    launch mon.a ceph-mon -c "$conf" -i a

    # OSD: register it (the first call also waits for the monitor to answer), give it a key,
    # create its store and start it.
    local osd_uuid osd_secret osd_id
    osd_uuid=$(uuidgen)
    osd_secret=$(ceph-authtool --gen-print-key)
    osd_id=$(printf '{"cephx_secret": "%s"}\n' "$osd_secret" |
        ceph_cli osd new "$osd_uuid" -i - 2>>"$dir/log/setup.log")
    [[ $osd_id == 0 ]] || die "ceph osd new returned '$osd_id', expected 0"
    run ceph-authtool --create-keyring "$dir/osd.0/keyring" --name osd.0 --add-key "$osd_secret"
    run ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid"
    launch osd.0 ceph-osd -c "$conf" -i 0

    # Wait for the OSD to be up before starting the gateway. Otherwise the gateway's first
    # reads have no OSD to go to, and it only learns that the OSD came up at its next
    # objecter tick, 5 s later (seen in about one start in five).
    local deadline=$((SECONDS + timeout_s)) osd_stat
    while :; do
        osd_stat=$(ceph_cli osd stat -f json 2>>"$dir/log/setup.log" || true)
        [[ $osd_stat == *'"num_up_osds":1'* ]] && break
        check_daemons
        ((SECONDS < deadline)) || die "OSD not up after ${timeout_s}s: $osd_stat"
        sleep 0.1
    done
    log "monitor and OSD up"

    # Gateway: at its first start it creates its pools and its default realm/zone.
    launch client.rgw.a radosgw -c "$conf" -n client.rgw.a

    local endpoint=http://127.0.0.1:$rgw_port code
    while :; do
        # Anonymous ListBuckets: 200 once the gateway has initialised its zone.
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$endpoint/" || true)
        [[ $code == 200 ]] && break
        check_daemons
        ((SECONDS < deadline)) || die "radosgw not ready after ${timeout_s}s (last HTTP status: $code)"
        sleep 0.1
    done
    log "radosgw answers on $endpoint"

    # After the gateway is up, so that radosgw-admin and radosgw do not both create the
    # default zone at the same time.
    run timeout 60 radosgw-admin -c "$conf" user create --uid="$RGW_USER" \
        --display-name="RegistryDR tests" --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY"

    echo "$endpoint" >"$dir/endpoint"
    START_OK=1
    trap - EXIT INT TERM
    log "ready (access key $ACCESS_KEY, region $REGION)"
    echo "$endpoint"
}

# ---------------------------------------------------------------- aws

# Runs /usr/bin/aws against the server in DIR with the test keys and nothing from the
# caller's AWS configuration (profiles, config files, instance metadata, CA bundle).
cmd_aws() {
    (($# >= 1)) || usage
    local dir endpoint
    dir=$(abs_dir "$1")
    shift
    [[ -s $dir/endpoint ]] || die "no server started in $dir (no $dir/endpoint)"
    endpoint=$(<"$dir/endpoint")
    [[ -x $AWS_BIN ]] || die "missing $AWS_BIN (Debian package awscli)"
    env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_SECURITY_TOKEN \
        -u AWS_CA_BUNDLE -u AWS_ENDPOINT_URL -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE \
        AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
        AWS_DEFAULT_REGION="$REGION" AWS_REGION="$REGION" \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_EC2_METADATA_DISABLED=true AWS_PAGER= \
        "$AWS_BIN" --endpoint-url "$endpoint" --region "$REGION" "$@"
}

cmd_mkbucket() {
    (($# == 2)) || usage
    # awscli 2.9 reports some radosgw errors with empty messages only as "argument of type
    # 'NoneType' is not iterable", an invalid bucket name among them: check the length here.
    ((${#2} >= 3 && ${#2} <= 63)) || die "bucket names have 3 to 63 characters: '$2'"
    cmd_aws "$1" s3api create-bucket --bucket "$2" >/dev/null
    echo "$2"
}

# ---------------------------------------------------------------- main

(($# >= 1)) || usage
command=$1
shift
case $command in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
mkbucket) cmd_mkbucket "$@" ;;
aws) cmd_aws "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
