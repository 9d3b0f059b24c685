#!/usr/bin/env bash
# bench/run.sh - compare ways of backing up and restoring a registry-like PostgreSQL 15 database
# to S3 (Ceph RGW on loopback): (a) pg_dump -Ft + aws s3 cp, (b) pgBackRest, (c) registry-dr,
# (d) pg_dump -Fc to a file / pg_restore --jobs=cores. See bench/README.md.
#
# Usage: bash bench/run.sh [--shape events|harbor|gitlab] [--size-mb N] [--runs N] [--keep] [--results-dir DIR]
#   --shape S          events (default): one big append-only audit log, compared by a, b and c;
#                      harbor, gitlab: bench/schemas/<S>-like.sql scaled to the size, compared by d and c
#   --size-mb N        target pg_database_size in MiB (default 50)
#   --runs N           repeat the measured steps N times on the same database (default 1); the
#                      table gives the median of each figure and of each same-run ratio
#   --keep             keep the work directory (default: removed at exit)
#   --results-dir DIR  where the result table is written (default bench/results)
#
# Needs root (the cluster runs as "postgres" via runuser), PostgreSQL 15, the .NET 10 SDK, the
# Ceph packages used by tests/tools/s3-server.sh, /usr/bin/aws, openssl. Installs the Debian
# packages pgbackrest and time if missing.

set -euo pipefail

SIZE_MB=50
KEEP=0
RESULTS_DIR=''
SHAPE=events
RUNS=1
usage="usage: $0 [--shape events|harbor|gitlab] [--size-mb N] [--runs N] [--keep] [--results-dir DIR]"
while (($#)); do
    case $1 in
    --shape)
        SHAPE=${2:?--shape needs a value}
        shift 2
        ;;
    --runs)
        RUNS=${2:?--runs needs a value}
        shift 2
        ;;
    --results-dir)
        RESULTS_DIR=${2:?--results-dir needs a value}
        shift 2
        ;;
    --size-mb)
        SIZE_MB=${2:?--size-mb needs a value}
        shift 2
        ;;
    --keep)
        KEEP=1
        shift
        ;;
    *)
        echo "$usage" >&2
        exit 2
        ;;
    esac
done
if ! [[ $SIZE_MB =~ ^[0-9]+$ ]] || ((SIZE_MB < 10)); then
    echo "--size-mb must be a number >= 10" >&2
    exit 2
fi
if ! [[ $RUNS =~ ^[0-9]+$ ]] || ((RUNS < 1 || RUNS > 20)); then
    echo "--runs must be a number from 1 to 20" >&2
    exit 2
fi
case $SHAPE in
events) APPROACHES=(a b c) ;;
harbor | gitlab) APPROACHES=(d c) ;;
*)
    echo "--shape must be events, harbor or gitlab" >&2
    exit 2
    ;;
esac
((EUID == 0)) || {
    echo "run as root" >&2
    exit 1
}

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
AWS_BIN=/usr/bin/aws
ACCESS_KEY=registrydr-test-access
SECRET_KEY=registrydr-test-secret-0123456789abcdef
CORES=$(nproc)
DB=registry

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for pkg in pgbackrest time; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        log "installing $pkg"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" >/dev/null
    fi
done
[[ -x $PGBIN/initdb ]] || {
    echo "PostgreSQL 15 not found in $PGBIN" >&2
    exit 1
}
[[ -x $AWS_BIN ]] || {
    echo "missing $AWS_BIN (Debian awscli)" >&2
    exit 1
}

# Short path: s3-server.sh wants a plain DIR of at most 50 characters.
WORK=$(mktemp -d /tmp/rdrb.XXXXXX)
chmod 755 "$WORK"
S3DIR=$WORK/s3
PGDATA=$WORK/pgdata
PGRESTORE_DATA=$WORK/pgbr-restored
PGPORT=''
PGPORT2=''
PG_STARTED=0
PG2_STARTED=0
S3_STARTED=0

cleanup() {
    local rc=$?
    set +e
    if ((PG2_STARTED)); then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGRESTORE_DATA" -m immediate stop >/dev/null 2>&1; fi
    if ((PG_STARTED)); then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1; fi
    if ((S3_STARTED)); then bash "$WORK/s3-server-tls.sh" stop "$S3DIR" >/dev/null 2>&1; fi
    if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf -- "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

as_pg() { runuser -u postgres -- "$@"; }
psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }

s3aws() {
    env -u AWS_PROFILE -u AWS_CA_BUNDLE -u AWS_ENDPOINT_URL \
        AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
        AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_EC2_METADATA_DISABLED=true AWS_PAGER='' \
        "$AWS_BIN" --endpoint-url "$S3_ENDPOINT" --region us-east-1 "$@"
}

bucket_bytes() {
    s3aws s3 ls "s3://$1" --recursive --summarize | awk '/Total Size:/ {print $3}'
}

# ------------------------------------------------------------------ S3 server (http + https)
# A variant of tests/tools/s3-server.sh whose beast frontend also serves TLS with a self-signed
# certificate (pgBackRest only speaks HTTPS to S3). Generated, so it follows the original.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/tls.key" -out "$WORK/tls.crt" -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1
chmod 644 "$WORK/tls.key" "$WORK/tls.crt"
# shellcheck disable=SC2016 # the $-words are written literally into the generated script
sed 's|^rgw frontends = beast endpoint=127.0.0.1:\$rgw_port$|& ssl_endpoint=127.0.0.1:${S3_TLS_PORT} ssl_certificate=${S3_TLS_CERT} ssl_private_key=${S3_TLS_KEY}|' \
    "$REPO/tests/tools/s3-server.sh" >"$WORK/s3-server-tls.sh"
grep -q 'ssl_endpoint=' "$WORK/s3-server-tls.sh" || {
    echo "could not patch the rgw frontends line of tests/tools/s3-server.sh" >&2
    exit 1
}
S3_TLS_PORT=$(free_port)
mem=$((SIZE_MB * 8 * 1024 * 1024))
((mem > 4294967296)) || mem=4294967296
log "starting S3 server (memstore $((mem / 1048576)) MiB)"
S3_STARTED=1
S3_ENDPOINT=$(S3_TLS_PORT=$S3_TLS_PORT S3_TLS_CERT=$WORK/tls.crt S3_TLS_KEY=$WORK/tls.key \
    S3_SERVER_MEMSTORE_BYTES=$mem bash "$WORK/s3-server-tls.sh" start "$S3DIR" 2>"$WORK/s3-start.log" | tail -n1)
log "S3 at $S3_ENDPOINT and https://127.0.0.1:$S3_TLS_PORT"
for b in bench-pgdump bench-pgbackrest bench-registrydr; do
    s3aws s3api create-bucket --bucket "$b" >/dev/null
done

# ------------------------------------------------------------------ PostgreSQL cluster + data
PGPORT=$(free_port)
install -d -o postgres -g postgres "$PGDATA" "$WORK/pgrun" "$WORK/pgbr" "$WORK/pglog"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log"
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/pgrun'
shared_buffers = 256MB
max_wal_size = 4GB
wal_level = replica
archive_mode = on
archive_command = '/bin/true'
EOF
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/pglog/pg.log" -w start >/dev/null
PG_STARTED=1
psql_q -d postgres -c "CREATE DATABASE $DB"

log "generating ~${SIZE_MB} MiB database ($SHAPE shape)"
generate_events() {
m=$((SIZE_MB * 40))
psql_q -d "$DB" <<SQL
CREATE TABLE repositories (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE,
    visibility text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE layers (id bigserial PRIMARY KEY, digest text NOT NULL UNIQUE, size bigint NOT NULL,
    media_type text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE manifests (id bigserial PRIMARY KEY, repository_id bigint NOT NULL REFERENCES repositories,
    digest text NOT NULL UNIQUE, media_type text NOT NULL, size bigint NOT NULL, payload jsonb NOT NULL,
    created_at timestamptz NOT NULL);
CREATE TABLE manifest_layers (manifest_id bigint NOT NULL REFERENCES manifests, layer_id bigint NOT NULL
    REFERENCES layers, position int NOT NULL, PRIMARY KEY (manifest_id, position));
CREATE TABLE tags (id bigserial PRIMARY KEY, repository_id bigint NOT NULL REFERENCES repositories,
    name text NOT NULL, manifest_id bigint NOT NULL REFERENCES manifests, updated_at timestamptz NOT NULL,
    UNIQUE (repository_id, name));
CREATE TABLE events (id bigserial PRIMARY KEY, occurred_at timestamptz NOT NULL, actor text NOT NULL,
    action text NOT NULL, repository_id bigint, digest text, remote_addr inet, user_agent text,
    request jsonb NOT NULL);

INSERT INTO repositories (name, visibility, created_at)
SELECT 'team-' || (g % 40) || '/service-' || g, CASE WHEN g % 5 = 0 THEN 'public' ELSE 'private' END,
       now() - g * interval '1 hour'
FROM generate_series(1, greatest(50, $SIZE_MB)) g;
INSERT INTO layers (digest, size, media_type, created_at)
SELECT 'sha256:' || md5('l' || g) || md5('L' || g), 1000 + (g * 7919) % 200000000,
       'application/vnd.oci.image.layer.v1.tar+gzip', now() - g * interval '1 minute'
FROM generate_series(1, $((m * 3 / 2))) g;
INSERT INTO manifests (repository_id, digest, media_type, size, payload, created_at)
SELECT 1 + g % greatest(50, $SIZE_MB), 'sha256:' || md5('m' || g) || md5('M' || g),
       'application/vnd.oci.image.manifest.v1+json', 500 + g % 3000,
       jsonb_build_object('schemaVersion', 2, 'config', jsonb_build_object('digest', 'sha256:' || md5('c' || g),
           'size', 1000 + g % 9000), 'annotations', jsonb_build_object('org.opencontainers.image.revision', md5('r' || g))),
       now() - g * interval '1 minute'
FROM generate_series(1, $m) g;
INSERT INTO manifest_layers (manifest_id, layer_id, position)
SELECT mm, 1 + (mm * 31 + p * 17) % $((m * 3 / 2)), p FROM generate_series(1, $m) mm, generate_series(1, 5) p;
INSERT INTO tags (repository_id, name, manifest_id, updated_at)
SELECT repository_id, 'v' || id, id, created_at FROM manifests;
CREATE INDEX ON manifests (repository_id);
CREATE INDEX ON manifest_layers (layer_id);
CREATE INDEX ON tags (manifest_id);
CREATE INDEX events_occurred_at ON events (occurred_at);
CREATE INDEX events_repository ON events (repository_id, occurred_at);
SQL

target=$((SIZE_MB * 1024 * 1024))
while :; do
    cur=$(psql_q -d "$DB" -Atc "SELECT pg_database_size(current_database())")
    ((cur < target)) || break
    rows=$(((target - cur) / 700))
    ((rows >= 5000)) || rows=5000
    start=$(psql_q -d "$DB" -Atc "SELECT coalesce(max(id), 0) FROM events")
    psql_q -d "$DB" -c "INSERT INTO events (occurred_at, actor, action, repository_id, digest, remote_addr, user_agent, request)
        SELECT now() - g * interval '1 second', 'user' || (g % 500) || '@example.com',
               (ARRAY['push','pull','pull','pull','delete','login'])[1 + g % 6], 1 + g % greatest(50, $SIZE_MB),
               'sha256:' || md5('m' || (g % $m)) || md5('M' || (g % $m)),
               ('10.' || (g % 250) || '.' || (g / 250 % 250) || '.' || (g % 7))::inet,
               'docker/24.0.' || (g % 9) || ' go/go1.20 git-commit/' || substr(md5('u' || g), 1, 7) || ' os/linux arch/amd64',
               jsonb_build_object('id', md5('q' || g), 'method', 'GET', 'host', 'registry.example.com',
                   'uri', '/v2/team-' || (g % 40) || '/service-' || (g % 997) || '/manifests/v' || g, 'status', 200,
                   'duration_ms', g % 1500)
        FROM generate_series($((start + 1)), $((start + rows))) g"
done
}
# The registry shapes are loaded once by their schema file at a scale that gives about --size-mb:
# pg_database_size grows linearly with scale (measured at scales 10 and 40 on PostgreSQL 15:
# harbor about 3.44 MB per unit over 9.9 MB, gitlab about 1.15 MB per unit over 55.6 MB,
# most of that base being its ~2,900 empty indexes).
generate_schema() {
    local per_unit base scale
    case $SHAPE in
    harbor) per_unit=3440000 base=9900000 ;;
    gitlab) per_unit=1145000 base=55600000 ;;
    esac
    scale=$(((SIZE_MB * 1048576 - base) / per_unit))
    ((scale >= 1)) || scale=1
    log "loading bench/schemas/$SHAPE-like.sql at scale $scale"
    psql_q -d "$DB" -v scale="$scale" -f "$REPO/bench/schemas/$SHAPE-like.sql" >"$WORK/schema-load.log"
    SCALE_NOTE="bench/schemas/$SHAPE-like.sql at scale $scale"
}
SCALE_NOTE=''
if [[ $SHAPE == events ]]; then generate_events; else generate_schema; fi
psql_q -d "$DB" -c "VACUUM ANALYZE" >/dev/null
DB_BYTES=$(psql_q -d "$DB" -Atc "SELECT pg_database_size(current_database())")
DB_PRETTY=$(psql_q -d "$DB" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")
log "database $DB is $DB_PRETTY ($DB_BYTES bytes)"
# The eight largest tables (schema-qualified outside public) and what the database is made of.
TABLE_SIZES=$(psql_q -d "$DB" -Atc "SELECT string_agg(name || ' ' || pg_size_pretty(size), ', ' ORDER BY size DESC) FROM (
    SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END AS name, pg_total_relation_size(c.oid) AS size
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 2 DESC LIMIT 8) t")
DB_SHAPE=$(psql_q -d "$DB" -Atc "SELECT format('%s tables (%s of them partitions), %s indexes, %s rows', count(*) FILTER (WHERE c.relkind = 'r'),
        count(*) FILTER (WHERE c.relkind = 'r' AND c.relispartition), count(*) FILTER (WHERE c.relkind = 'i'),
        (SELECT sum(n_live_tup) FROM pg_stat_user_tables))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')")

mkdir -p "$WORK/config/etc/dtr" "$WORK/config/var/dtr/certs"
printf 'version: 0.1\nstorage:\n  s3:\n    bucket: blobs\n' >"$WORK/config/etc/dtr/config.yml"
openssl rand -base64 3000 >"$WORK/config/var/dtr/certs/ca.pem"
for i in $(seq 1 20); do printf 'setting-%s = %s\n' "$i" "$RANDOM" >"$WORK/config/var/dtr/node-$i.conf"; done

# ------------------------------------------------------------------ correctness: the tests' oracles
# Every restore is compared with the original by tests/RegistryDR.Oracle (the same code as the
# tests' DatabaseSnapshot and DirectorySnapshot): every fact of the database (schema, rows as
# ordered hashes, sequences, owners, ACLs, database settings) and of the config tree. Outside the
# measured steps; on a large database its row hashing (a sort of every table) takes a while.
log "building the oracle (tests/RegistryDR.Oracle)"
dotnet build "$REPO/tests/RegistryDR.Oracle" -c Release -o "$WORK/oracle" >"$WORK/oracle-build.log" 2>&1 || {
    tail -n 30 "$WORK/oracle-build.log" >&2
    exit 1
}
oracle_db() { # oracle_db PORT DATABASE: the snapshot on stdout
    PGHOST=127.0.0.1 PGPORT=$1 PGUSER=postgres PGDATABASE=$2 dotnet "$WORK/oracle/registrydr-oracle.dll" database
}
oracle_tree() { dotnet "$WORK/oracle/registrydr-oracle.dll" tree "$WORK/config/etc" "$WORK/config/var"; }
same_as_original() { # same_as_original LABEL ORIGINAL RESTORED
    if ! diff -u "$2" "$3" >"$WORK/oracle-diff-$1.txt"; then
        echo "($1) the restore differs from the original ($(grep -c '^[-+][^-+]' "$WORK/oracle-diff-$1.txt") lines; first ones below, all in $WORK/oracle-diff-$1.txt):" >&2
        head -n 40 "$WORK/oracle-diff-$1.txt" >&2
        exit 1
    fi
}
log "snapshotting the original database and config tree"
oracle_db "$PGPORT" "$DB" >"$WORK/oracle-original.txt"
oracle_tree >"$WORK/oracle-config-original.txt"

# ------------------------------------------------------------------ measuring
# measure NAME CMD...: /usr/bin/time -v; sets WALL[NAME], CPU[NAME], RSS[NAME] (MiB) and LOAD[NAME],
# the load average (uptime's 1, 5 and 15 minutes) just before the step started: this machine may be
# shared, and a step measured while something else ran must show it.
declare -A WALL CPU RSS LOAD BYTES
measure() {
    local name=$1 out=$WORK/time-$1.txt
    shift
    # Each step starts from a checkpoint, so none inherits another's dirty buffers or has to
    # create (zero-fill) new WAL segments that an earlier step's checkpoint would have recycled.
    # ... and from a clean page cache: writeback left by the previous step (b's restored data
    # directory, a's download) would otherwise compete with this one for the disk.
    psql_q -d postgres -c CHECKPOINT >/dev/null
    sync
    LOAD[$name]=$(uptime | sed 's/.*load average: *//')
    log "run: $name (load average ${LOAD[$name]})"
    if ! /usr/bin/time -v -o "$out" "$@" >"$WORK/out-$name.log" 2>&1; then
        echo "step $name failed; last lines of its output:" >&2
        tail -n 30 "$WORK/out-$name.log" >&2
        exit 1
    fi
    WALL[$name]=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.1f", s}' "$out")
    CPU[$name]=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", u+s}' "$out")
    RSS[$name]=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$out")
}

export -f s3aws
export S3_ENDPOINT ACCESS_KEY SECRET_KEY AWS_BIN

# (a) pg_dump -Ft to a file, aws s3 cp; restore: download, pg_restore (single process)
run_a() { # run_a RUN
    local r=$1
    measure "a_backup_$r" bash -c "set -euo pipefail
        '$PGBIN/pg_dump' -h 127.0.0.1 -p $PGPORT -U postgres -Ft -f '$WORK/dump.tar' $DB
        s3aws s3 cp --only-show-errors '$WORK/dump.tar' s3://bench-pgdump/dump.tar
        rm -f '$WORK/dump.tar'"
    BYTES[a_$r]=$(bucket_bytes bench-pgdump)
    measure "a_restore_$r" bash -c "set -euo pipefail
        s3aws s3 cp --only-show-errors s3://bench-pgdump/dump.tar '$WORK/dump-dl.tar'
        '$PGBIN/createdb' -h 127.0.0.1 -p $PGPORT -U postgres ${DB}_a
        '$PGBIN/pg_restore' -h 127.0.0.1 -p $PGPORT -U postgres --exit-on-error -d ${DB}_a '$WORK/dump-dl.tar'
        rm -f '$WORK/dump-dl.tar'"
    oracle_db "$PGPORT" "${DB}_a" >"$WORK/oracle-a.txt"
    same_as_original "a-$r" "$WORK/oracle-original.txt" "$WORK/oracle-a.txt"
    psql_q -d postgres -c "DROP DATABASE ${DB}_a"
    s3aws s3 rm --only-show-errors s3://bench-pgdump/dump.tar
}

# (d) pg_dump -Fc to a local file; restore: pg_restore --jobs=cores of that file into an empty
# database. No S3 at either end: the baseline the registry shapes' goals are set against.
run_d() { # run_d RUN
    local r=$1
    measure "d_backup_$r" "$PGBIN/pg_dump" -h 127.0.0.1 -p "$PGPORT" -U postgres -Fc -f "$WORK/dump.fc" "$DB"
    BYTES[d_$r]=$(stat -c %s "$WORK/dump.fc")
    measure "d_restore_$r" bash -c "set -euo pipefail
        '$PGBIN/createdb' -h 127.0.0.1 -p $PGPORT -U postgres ${DB}_d
        '$PGBIN/pg_restore' -h 127.0.0.1 -p $PGPORT -U postgres --exit-on-error --jobs=$CORES -d ${DB}_d '$WORK/dump.fc'"
    oracle_db "$PGPORT" "${DB}_d" >"$WORK/oracle-d.txt"
    same_as_original "d-$r" "$WORK/oracle-original.txt" "$WORK/oracle-d.txt"
    psql_q -d postgres -c "DROP DATABASE ${DB}_d"
    rm -f "$WORK/dump.fc"
}

# (b) pgBackRest full backup + restore, process-max = cores, zstd, S3 repo over TLS, small files
# bundled (repo1-bundle, pgBackRest's advice for object stores): without it every file of the
# cluster, 1,300 of them even in an empty one, is its own object, and the restore spent about 29 s
# fetching them one GET at a time whatever the database's size (docs/performance.md).
B_NOTE=''
PGBR=(pgbackrest "--config=$WORK/pgbr/pgbackrest.conf" --stanza=bench)
setup_b() {
    cat >"$WORK/pgbr/pgbackrest.conf" <<EOF
[global]
repo1-type=s3
repo1-path=/bench
repo1-s3-bucket=bench-pgbackrest
repo1-s3-endpoint=localhost
repo1-storage-port=$S3_TLS_PORT
repo1-storage-ca-file=$WORK/tls.crt
repo1-s3-region=us-east-1
repo1-s3-key=$ACCESS_KEY
repo1-s3-key-secret=$SECRET_KEY
repo1-s3-uri-style=path
repo1-retention-full=$((RUNS + 1))
repo1-bundle=y
process-max=$CORES
compress-type=zst
start-fast=y
log-path=$WORK/pgbr
lock-path=$WORK/pgbr
spool-path=$WORK/pgbr
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$PGDATA
pg1-port=$PGPORT
pg1-socket-path=$WORK/pgrun
EOF
    chown -R postgres:postgres "$WORK/pgbr"
    chmod 600 "$WORK/pgbr/pgbackrest.conf"
    archive_to_pgbackrest on
    if ! { as_pg "${PGBR[@]}" stanza-create >"$WORK/out-b_stanza.log" 2>&1 &&
        as_pg "${PGBR[@]}" check >>"$WORK/out-b_stanza.log" 2>&1; }; then
        B_NOTE="not run: pgbackrest stanza-create/check failed ($(tail -n1 "$WORK/out-b_stanza.log"))"
        log "(b) $B_NOTE"
    fi
    archive_to_pgbackrest off
}
# WAL goes to pgBackRest's archive only while b runs, so no other step pays for archive-push.
archive_to_pgbackrest() {
    local command="'/bin/true'"
    [[ $1 == on ]] && command="'pgbackrest --config=$WORK/pgbr/pgbackrest.conf --stanza=bench archive-push %p'"
    psql_q -d postgres -c "ALTER SYSTEM SET archive_command = $command" -c "SELECT pg_reload_conf()" >/dev/null
}
run_b() { # run_b RUN
    local r=$1 before
    [[ -z $B_NOTE ]] || return 0
    archive_to_pgbackrest on
    before=$(bucket_bytes bench-pgbackrest)
    measure "b_backup_$r" runuser -u postgres -- "${PGBR[@]}" --type=full backup
    BYTES[b_$r]=$(($(bucket_bytes bench-pgbackrest) - ${before:-0}))
    archive_to_pgbackrest off
    PGPORT2=$(free_port)
    install -d -m 700 -o postgres -g postgres "$PGRESTORE_DATA"
    # Restore into an empty data directory, then start it and wait until it accepts connections
    # (recovery replays the WAL of the backup from the repo's archive).
    PG2_STARTED=1
    measure "b_restore_$r" runuser -u postgres -- bash -c "set -euo pipefail
        pgbackrest --config='$WORK/pgbr/pgbackrest.conf' --stanza=bench --pg1-path='$PGRESTORE_DATA' restore
        '$PGBIN/pg_ctl' -D '$PGRESTORE_DATA' -l '$WORK/pglog/pg2-$r.log' -w -t 3600 \
            -o '-p $PGPORT2 -c archive_mode=off -c unix_socket_directories=$WORK/pgrun' start"
    oracle_db "$PGPORT2" "$DB" >"$WORK/oracle-b.txt"
    same_as_original "b-$r" "$WORK/oracle-original.txt" "$WORK/oracle-b.txt"
    as_pg "$PGBIN/pg_ctl" -D "$PGRESTORE_DATA" -m fast stop >/dev/null
    PG2_STARTED=0
    rm -rf -- "$PGRESTORE_DATA"
}

# (c) registry-dr backup + restore
setup_c() {
    log "building registry-dr"
    dotnet publish "$REPO/src/RegistryDR.Cli" -c Release -o "$WORK/rdr" >"$WORK/publish.log" 2>&1 || {
        tail -n 30 "$WORK/publish.log" >&2
        exit 1
    }
    cat >"$WORK/registry-dr.json" <<EOF
{
  "Database": { "Host": "127.0.0.1", "Port": $PGPORT, "Name": "$DB", "User": "postgres",
                "BinDirectory": "$PGBIN" },
  "Config":   { "Directories": ["$WORK/config/etc", "$WORK/config/var"] },
  "Registry": { "StopCommand": [], "StartCommand": [] },
  "Store":    { "Url": "s3://bench-registrydr/registry", "ServiceUrl": "$S3_ENDPOINT", "Region": "us-east-1",
                "ForcePathStyle": true, "Checksums": "WhenRequired", "ServerSideEncryption": "None" },
  "Monitoring": { "Enabled": false, "EmfLogPath": "" },
  "Agent":    { "StateFile": "$WORK/node-state.json" },
  "Restore":  { "StagingDirectory": "$WORK/staging" }
}
EOF
    mkdir -p "$WORK/staging"
    "${RDR[@]}" init-store >"$WORK/init-store.log" 2>&1 || {
        cat "$WORK/init-store.log" >&2
        exit 1
    }
}
RDR=(env AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" AWS_EC2_METADATA_DISABLED=true
    REGISTRYDR_DB_PASSWORD=unused dotnet "$WORK/rdr/registry-dr.dll" --config "$WORK/registry-dr.json")
run_c() { # run_c RUN
    local r=$1 before
    before=$(bucket_bytes bench-registrydr)
    measure "c_backup_$r" "${RDR[@]}" backup
    BYTES[c_$r]=$(($(bucket_bytes bench-registrydr) - ${before:-0}))
    # The original is set aside, not dropped: every run backs up the same physical database (a
    # freshly loaded one has no hint bits or visibility map yet, so it would not be the same work).
    psql_q -d postgres -c "ALTER DATABASE $DB RENAME TO ${DB}_original"
    measure "c_restore_$r" "${RDR[@]}" restore latest
    oracle_db "$PGPORT" "$DB" >"$WORK/oracle-c.txt"
    same_as_original "c-$r" "$WORK/oracle-original.txt" "$WORK/oracle-c.txt"
    oracle_tree >"$WORK/oracle-config-c.txt"
    same_as_original "c-config-$r" "$WORK/oracle-config-original.txt" "$WORK/oracle-config-c.txt"
    psql_q -d postgres -c "DROP DATABASE $DB" -c "ALTER DATABASE ${DB}_original RENAME TO $DB"
}

for k in "${APPROACHES[@]}"; do
    case $k in
    b) setup_b ;;
    c) setup_c ;;
    esac
done
LOAD_START=$(uptime | sed 's/.*load average: *//')
for ((r = 1; r <= RUNS; r++)); do
    log "run $r of $RUNS"
    for k in "${APPROACHES[@]}"; do "run_$k" "$r"; done
done
LOAD_END=$(uptime | sed 's/.*load average: *//')

# ------------------------------------------------------------------ report
ratio() { # ratio X Y -> X/Y with two decimals, or n/a
    if [[ -z $1 || -z $2 ]] || awk -v y="$2" 'BEGIN {exit !(y == 0)}'; then echo 'n/a'; else awk -v x="$1" -v y="$2" 'BEGIN {printf "%.2f", x / y}'; fi
}
median() { # median V...: the middle value (mean of the two middle ones for an even count), or n/a
    local v
    for v in "$@"; do [[ $v != n/a && -n $v ]] || {
        echo n/a
        return
    }; done
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR % 2) printf "%.2f", a[(NR + 1) / 2]; else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2}' |
        sed 's/0$//'
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
# The seven figures of approach K in run R: backup wall, CPU, RSS, restore wall, CPU, RSS, MiB stored.
figures() { echo "${WALL[${1}_backup_$2]} ${CPU[${1}_backup_$2]} ${RSS[${1}_backup_$2]} ${WALL[${1}_restore_$2]} ${CPU[${1}_restore_$2]} ${RSS[${1}_restore_$2]} $(mib "${BYTES[${1}_$2]}")"; }
ratios() { # ratios K1 K2 R: the seven same-run ratios K1/K2
    local -a x y
    read -ra x <<<"$(figures "$1" "$3")"
    read -ra y <<<"$(figures "$2" "$3")"
    local i out=()
    for i in 0 1 2 3 4 5 6; do out+=("$(ratio "${x[i]}" "${y[i]}")"); done
    echo "${out[*]}"
}
medians() { # medians LINE...: column-wise medians of lines of seven numbers
    local i r out=() col
    for i in 0 1 2 3 4 5 6; do
        col=()
        for r in "$@"; do
            local -a f
            read -ra f <<<"$r"
            col+=("${f[i]}")
        done
        out+=("$(median "${col[@]}")")
    done
    echo "${out[*]}"
}
cells() { local f; for f in "$@"; do printf ' %s |' "$f"; done; }
declare -A LABEL=(
    [a]='a. pg_dump -Ft + aws s3 cp / download + pg_restore'
    [b]="b. pgBackRest 2.45 full, process-max=$CORES, zst"
    [c]='c. registry-dr backup / restore'
    [d]="d. pg_dump -Fc to a file / pg_restore --jobs=$CORES"
)
BASELINES=()
for k in "${APPROACHES[@]}"; do
    [[ $k == c || ($k == b && -n $B_NOTE) ]] || BASELINES+=("$k")
done
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
mkdir -p "$RESULTS_DIR"
RESULT=$RESULTS_DIR/$(date -u +%Y%m%d-%H%M)-$SHAPE-${SIZE_MB}mb.md
{
    echo "Shape: $SHAPE${SCALE_NOTE:+ ($SCALE_NOTE)}. Database: $DB_PRETTY ($DB_BYTES bytes; $DB_SHAPE); $CORES cores;" \
        "S3: Ceph RGW 16 memstore on loopback; $RUNS run(s); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "Largest tables (with indexes and TOAST): $TABLE_SIZES"
    echo "Load average (1, 5, 15 min) when the measured runs started: $LOAD_START; when they ended: $LOAD_END"
    echo
    if ((RUNS > 1)); then echo "Medians over the $RUNS runs; each ratio is the median of the same-run ratios (per run below)."; echo; fi
    echo '| approach | backup wall s | backup CPU s | backup peak RSS MiB | restore wall s | restore CPU s | restore peak RSS MiB | stored |'
    echo '|---|---|---|---|---|---|---|---|'
    for k in "${APPROACHES[@]}"; do
        if [[ $k == b && -n $B_NOTE ]]; then
            echo "| b. pgBackRest | $B_NOTE | | | | | | |"
            continue
        fi
        runs=()
        for ((r = 1; r <= RUNS; r++)); do runs+=("$(figures "$k" "$r")"); done
        read -ra f <<<"$(medians "${runs[@]}")"
        f[6]="${f[6]} MiB"
        echo "| ${LABEL[$k]} |$(cells "${f[@]}")"
    done
    for k in "${BASELINES[@]}"; do
        runs=()
        for ((r = 1; r <= RUNS; r++)); do runs+=("$(ratios c "$k" "$r")"); done
        read -ra f <<<"$(medians "${runs[@]}")"
        echo "| ratio c/$k |$(cells "${f[@]}")"
    done
    echo
    echo 'Every measured step, with the load average just before it started:'
    echo
    echo '| run | step | wall s | CPU s | peak RSS MiB | load average before (1, 5, 15 min) |'
    echo '|---|---|---|---|---|---|'
    for ((r = 1; r <= RUNS; r++)); do
        for k in "${APPROACHES[@]}"; do
            for step in backup restore; do
                n=${k}_${step}_$r
                [[ -n ${WALL[$n]:-} ]] || continue
                echo "| $r | $k $step | ${WALL[$n]} | ${CPU[$n]} | ${RSS[$n]} | ${LOAD[$n]} |"
            done
        done
    done
    echo
    echo 'Same-run ratios:'
    echo
    echo '| run | ratio | backup wall | backup CPU | backup RSS | restore wall | restore CPU | restore RSS | stored |'
    echo '|---|---|---|---|---|---|---|---|---|'
    for ((r = 1; r <= RUNS; r++)); do
        for k in "${BASELINES[@]}"; do
            read -ra f <<<"$(ratios c "$k" "$r")"
            echo "| $r | c/$k |$(cells "${f[@]}")"
        done
    done
    echo
    echo 'CPU = user+sys of the command and its children (/usr/bin/time -v); the PostgreSQL server'"'"'s own'
    echo 'work (backends serving pg_dump/pg_restore/COPY, recovery in the started cluster for b) is not included.'
    echo 'Peak RSS is the largest single process in the tree. pgBackRest restore wall time includes'
    echo 'starting the restored cluster and WAL replay until it accepts connections. MiB stored for b'
    echo 'include the WAL archived during its backup; for d it is the local dump file.'
} >"$RESULT"
cat "$RESULT"
log "written to $RESULT"
