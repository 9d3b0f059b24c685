#!/usr/bin/env bash
# bench/run.sh - compare three ways of backing up and restoring a registry-like PostgreSQL 15
# database to S3 (Ceph RGW on loopback): (a) pg_dump -Ft + aws s3 cp, (b) pgBackRest,
# (c) registry-dr. See bench/README.md.
#
# Usage: bash bench/run.sh [--size-mb N] [--keep] [--results-dir DIR]
#   --size-mb N        target pg_database_size in MiB (default 50)
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
while (($#)); do
    case $1 in
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
        echo "usage: $0 [--size-mb N] [--keep] [--results-dir DIR]" >&2
        exit 2
        ;;
    esac
done
if ! [[ $SIZE_MB =~ ^[0-9]+$ ]] || ((SIZE_MB < 10)); then
    echo "--size-mb must be a number >= 10" >&2
    exit 2
fi
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

log "generating ~${SIZE_MB} MiB database"
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
psql_q -d "$DB" -c "VACUUM ANALYZE" >/dev/null
DB_BYTES=$(psql_q -d "$DB" -Atc "SELECT pg_database_size(current_database())")
DB_PRETTY=$(psql_q -d "$DB" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")
log "database $DB is $DB_PRETTY ($DB_BYTES bytes)"
TABLE_SIZES=$(psql_q -d "$DB" -Atc "SELECT string_agg(relname || ' ' || pg_size_pretty(pg_total_relation_size(oid)), ', ' ORDER BY pg_total_relation_size(oid) DESC)
    FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")

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
# measure NAME CMD...: /usr/bin/time -v; sets WALL_<NAME>, CPU_<NAME>, RSS_<NAME> (MiB).
declare -A WALL CPU RSS
measure() {
    local name=$1 out=$WORK/time-$1.txt
    shift
    # Each step starts from a checkpoint, so none inherits another's dirty buffers or has to
    # create (zero-fill) new WAL segments that an earlier step's checkpoint would have recycled.
    # ... and from a clean page cache: writeback left by the previous step (b's restored data
    # directory, a's download) would otherwise compete with this one for the disk.
    psql_q -d postgres -c CHECKPOINT >/dev/null
    sync
    log "run: $name"
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
measure a_backup bash -c "set -euo pipefail
    '$PGBIN/pg_dump' -h 127.0.0.1 -p $PGPORT -U postgres -Ft -f '$WORK/dump.tar' $DB
    s3aws s3 cp --only-show-errors '$WORK/dump.tar' s3://bench-pgdump/dump.tar
    rm -f '$WORK/dump.tar'"
BYTES_a=$(bucket_bytes bench-pgdump)
measure a_restore bash -c "set -euo pipefail
    s3aws s3 cp --only-show-errors s3://bench-pgdump/dump.tar '$WORK/dump-dl.tar'
    '$PGBIN/createdb' -h 127.0.0.1 -p $PGPORT -U postgres ${DB}_a
    '$PGBIN/pg_restore' -h 127.0.0.1 -p $PGPORT -U postgres --exit-on-error -d ${DB}_a '$WORK/dump-dl.tar'
    rm -f '$WORK/dump-dl.tar'"
rows_orig=$(psql_q -d "$DB" -Atc "SELECT count(*) FROM events")
oracle_db "$PGPORT" "${DB}_a" >"$WORK/oracle-a.txt"
same_as_original a "$WORK/oracle-original.txt" "$WORK/oracle-a.txt"
psql_q -d postgres -c "DROP DATABASE ${DB}_a"

# (b) pgBackRest full backup + restore, process-max = cores, zstd, S3 repo over TLS
B_NOTE=''
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
repo1-retention-full=2
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
PGBR=(pgbackrest "--config=$WORK/pgbr/pgbackrest.conf" --stanza=bench)
psql_q -d postgres -c "ALTER SYSTEM SET archive_command = 'pgbackrest --config=$WORK/pgbr/pgbackrest.conf --stanza=bench archive-push %p'" \
    -c "SELECT pg_reload_conf()" >/dev/null
if as_pg "${PGBR[@]}" stanza-create >"$WORK/out-b_stanza.log" 2>&1 &&
    as_pg "${PGBR[@]}" check >>"$WORK/out-b_stanza.log" 2>&1; then
    measure b_backup runuser -u postgres -- "${PGBR[@]}" --type=full backup
    BYTES_b=$(bucket_bytes bench-pgbackrest)
    PGPORT2=$(free_port)
    install -d -m 700 -o postgres -g postgres "$PGRESTORE_DATA"
    # Restore into an empty data directory, then start it and wait until it accepts connections
    # (recovery replays the WAL of the backup from the repo's archive).
    PG2_STARTED=1
    measure b_restore runuser -u postgres -- bash -c "set -euo pipefail
        pgbackrest --config='$WORK/pgbr/pgbackrest.conf' --stanza=bench --pg1-path='$PGRESTORE_DATA' restore
        '$PGBIN/pg_ctl' -D '$PGRESTORE_DATA' -l '$WORK/pglog/pg2.log' -w -t 3600 \
            -o '-p $PGPORT2 -c archive_mode=off -c unix_socket_directories=$WORK/pgrun' start"
    oracle_db "$PGPORT2" "$DB" >"$WORK/oracle-b.txt"
    same_as_original b "$WORK/oracle-original.txt" "$WORK/oracle-b.txt"
    as_pg "$PGBIN/pg_ctl" -D "$PGRESTORE_DATA" -m fast stop >/dev/null
    PG2_STARTED=0
    rm -rf -- "$PGRESTORE_DATA"
else
    B_NOTE="not run: pgbackrest stanza-create/check failed ($(tail -n1 "$WORK/out-b_stanza.log"))"
    log "(b) $B_NOTE"
fi
psql_q -d postgres -c "ALTER SYSTEM SET archive_command = '/bin/true'" -c "SELECT pg_reload_conf()" >/dev/null

# (c) registry-dr backup + restore
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
RDR=(env AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" AWS_EC2_METADATA_DISABLED=true
    REGISTRYDR_DB_PASSWORD=unused dotnet "$WORK/rdr/registry-dr.dll" --config "$WORK/registry-dr.json")
"${RDR[@]}" init-store >"$WORK/init-store.log" 2>&1 || { cat "$WORK/init-store.log" >&2; exit 1; }
measure c_backup "${RDR[@]}" backup
BYTES_c=$(bucket_bytes bench-registrydr)
psql_q -d postgres -c "DROP DATABASE $DB"
measure c_restore "${RDR[@]}" restore latest
oracle_db "$PGPORT" "$DB" >"$WORK/oracle-c.txt"
same_as_original c "$WORK/oracle-original.txt" "$WORK/oracle-c.txt"
oracle_tree >"$WORK/oracle-config-c.txt"
same_as_original c-config "$WORK/oracle-config-original.txt" "$WORK/oracle-config-c.txt"

# ------------------------------------------------------------------ report
ratio() { # ratio X Y -> X/Y with two decimals, or n/a
    if [[ -z $1 || -z $2 ]] || awk -v y="$2" 'BEGIN {exit !(y == 0)}'; then echo 'n/a'; else awk -v x="$1" -v y="$2" 'BEGIN {printf "%.2f", x / y}'; fi
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
row() { # row KEY LABEL BYTES
    local k=$1
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$2" \
        "${WALL[${k}_backup]}" "${CPU[${k}_backup]}" "${RSS[${k}_backup]}" \
        "${WALL[${k}_restore]}" "${CPU[${k}_restore]}" "${RSS[${k}_restore]}" "$(mib "$3")"
}
ratio_row() { # ratio_row LABEL K1 K2 BYTES1 BYTES2
    local a=$2 b=$3
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" \
        "$(ratio "${WALL[${a}_backup]}" "${WALL[${b}_backup]}")" "$(ratio "${CPU[${a}_backup]}" "${CPU[${b}_backup]}")" \
        "$(ratio "${RSS[${a}_backup]}" "${RSS[${b}_backup]}")" \
        "$(ratio "${WALL[${a}_restore]}" "${WALL[${b}_restore]}")" "$(ratio "${CPU[${a}_restore]}" "${CPU[${b}_restore]}")" \
        "$(ratio "${RSS[${a}_restore]}" "${RSS[${b}_restore]}")" "$(ratio "$4" "$5")"
}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
mkdir -p "$RESULTS_DIR"
RESULT=$RESULTS_DIR/$(date -u +%Y%m%d-%H%M)-${SIZE_MB}mb.md
{
    echo "Database: $DB_PRETTY ($DB_BYTES bytes, $rows_orig events); $CORES cores; S3: Ceph RGW 16 memstore on loopback; $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "Tables (with indexes and TOAST): $TABLE_SIZES"
    echo
    echo '| approach | backup wall s | backup CPU s | backup peak RSS MiB | restore wall s | restore CPU s | restore peak RSS MiB | bytes stored |'
    echo '|---|---|---|---|---|---|---|---|'
    row a 'a. pg_dump -Ft + aws s3 cp / download + pg_restore' "$BYTES_a"
    if [[ -z $B_NOTE ]]; then
        row b "b. pgBackRest 2.45 full, process-max=$CORES, zst" "$BYTES_b"
    else
        echo "| b. pgBackRest | $B_NOTE | | | | | | |"
    fi
    row c 'c. registry-dr backup / restore' "$BYTES_c"
    ratio_row 'ratio c/a' c a "$BYTES_c" "$BYTES_a"
    if [[ -z $B_NOTE ]]; then ratio_row 'ratio c/b' c b "$BYTES_c" "$BYTES_b"; fi
    echo
    echo 'CPU = user+sys of the command and its children (/usr/bin/time -v); the PostgreSQL server'"'"'s own'
    echo 'work (backends serving pg_dump/pg_restore, recovery in the started cluster for b) is not included.'
    echo 'Peak RSS is the largest single process in the tree. pgBackRest restore wall time includes'
    echo 'starting the restored cluster and WAL replay until it accepts connections. Bytes stored for b'
    echo 'include the archived WAL needed by the backup.'
} >"$RESULT"
cat "$RESULT"
log "written to $RESULT"
