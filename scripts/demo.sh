#!/usr/bin/env bash
# The main job on local defaults, with no AWS account: a throwaway registry node (PostgreSQL
# metadata database, DTR-style config directories, a Debian docker-registry) is backed up to a
# local file store, wiped, and restored by registry-dr; then the database and every file are
# compared with what was there before by the tests' oracles (tests/RegistryDR.Oracle). Everything
# lives in one temp directory and is removed at the end. Needs root (to install packages and to
# run PostgreSQL as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bash scripts/install-prerequisites.sh postgresql-15 postgresql-client-15 docker-registry

work=$(mktemp -d /tmp/registry-dr-demo.XXXXXX)
chmod 755 "$work"
pgbin=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
log() { printf '\n== %s\n' "$*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  set +e
  [[ -x "$work/registry-ctl" ]] && "$work/registry-ctl" stop
  [[ -d "$work/pg" ]] && as_postgres "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

log "Building registry-dr"
dotnet build "$repo/src/RegistryDR.Cli" -c Release -o "$work/bin" -nologo -v quiet >/dev/null
dotnet build "$repo/tests/RegistryDR.Oracle" -c Release -o "$work/oracle" -nologo -v quiet >/dev/null
rdr() { dotnet "$work/bin/registry-dr.dll" --config "$work/registry-dr.json" "$@"; }

log "Starting a throwaway PostgreSQL 15"
pgport=$(free_port)
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
umask 077
printf '%s\n' "$password" > "$work/db-password"
cp "$work/db-password" "$work/pwfile"
umask 022
mkdir -p "$work/pg" "$work/sock"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$work/pg" "$work/sock" "$work/pwfile"; fi
as_postgres "$pgbin/initdb" -D "$work/pg" -U postgres --pwfile="$work/pwfile" --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
rm -f "$work/pwfile"
as_postgres "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$pgport -c unix_socket_directories=$work/sock" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$pgport PGUSER=postgres
PGPASSWORD=$password psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE ROLE dtr_app LOGIN PASSWORD 'dtr-app-demo';
CREATE DATABASE dtr OWNER dtr_app;
\c dtr
SET ROLE dtr_app;
CREATE TABLE repositories (id serial PRIMARY KEY, namespace text NOT NULL, name text NOT NULL, UNIQUE (namespace, name));
CREATE TABLE manifests (id bigserial PRIMARY KEY, repository_id int NOT NULL REFERENCES repositories, digest text UNIQUE NOT NULL, size bigint NOT NULL, config bytea);
CREATE TABLE tags (repository_id int REFERENCES repositories, name text, manifest_id bigint REFERENCES manifests, pushed_at timestamptz NOT NULL, PRIMARY KEY (repository_id, name));
INSERT INTO repositories (namespace, name) SELECT 'team' || (g % 20), 'app-' || g FROM generate_series(1, 500) g;
INSERT INTO manifests (repository_id, digest, size, config)
  SELECT 1 + (g % 500), 'sha256:' || encode(sha256(g::text::bytea), 'hex'), g * 1024, sha256(('cfg' || g)::bytea) FROM generate_series(1, 5000) g;
INSERT INTO tags SELECT m.repository_id, 'v' || m.id, m.id, timestamptz '2026-01-01' + m.id * interval '1 minute' FROM manifests m;
SQL

log "Creating the node's config directories and a docker-registry"
node=$work/node
mkdir -p "$node/var/local/dtr/ssl" "$node/usr/local/etc/dtr" "$work/blobs"
echo '{"license":"demo"}' > "$node/var/local/dtr/license.json"
head -c 65536 /dev/urandom > "$node/var/local/dtr/ssl/server.key"
chmod 600 "$node/var/local/dtr/ssl/server.key"
ln -s ssl/server.key "$node/var/local/dtr/current.key"
regport=$(free_port)
cat > "$node/usr/local/etc/dtr/config.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/blobs
http:
  addr: 127.0.0.1:$regport
YML
cat > "$work/registry-ctl" <<CTL
#!/usr/bin/env bash
# Starts or stops the demo registry; registry-dr runs this as Registry:StartCommand/StopCommand.
set -euo pipefail
case "\$1" in
  start) nohup /usr/bin/docker-registry serve "$node/usr/local/etc/dtr/config.yml" >>"$work/registry.log" 2>&1 &
         echo \$! > "$work/registry.pid" ;;
  stop)  if [[ -f "$work/registry.pid" ]]; then kill "\$(cat "$work/registry.pid")" 2>/dev/null || true; rm -f "$work/registry.pid"; fi ;;
esac
CTL
chmod +x "$work/registry-ctl"
"$work/registry-ctl" start

cat > "$work/registry-dr.json" <<JSON
{
  "Database": { "Host": "127.0.0.1", "Port": $pgport, "Name": "dtr", "User": "postgres", "PasswordFile": "$work/db-password" },
  "Config": { "Directories": [ "$node/var/local/dtr", "$node/usr/local/etc/dtr" ] },
  "Registry": {
    "StopCommand": [ "$work/registry-ctl", "stop" ],
    "StartCommand": [ "$work/registry-ctl", "start" ],
    "HealthUrl": "http://127.0.0.1:$regport/v2/",
    "HealthTimeout": "00:00:30"
  },
  "Store": { "Url": "file://$work/store" },
  "Agent": { "StateFile": "$work/state/node-state.json" },
  "Monitoring": { "Enabled": false, "EmfLogPath": "" }
}
JSON

chmod 600 "$work/registry-dr.json"

# The tests' oracles (tests/RegistryDR.Oracle): every fact of the database (schema, rows as ordered
# hashes, sequences, owners, ACLs, database-level settings, roles it uses) and of the config trees
# (names as bytes, contents, modes, owners, nanosecond mtimes, link targets, hard links, ACLs, xattrs).
snapshot() {
  PGPASSWORD=$password PGDATABASE=dtr dotnet "$work/oracle/registrydr-oracle.dll" database
  dotnet "$work/oracle/registrydr-oracle.dll" tree "$node/var/local/dtr" "$node/usr/local/etc/dtr"
}

log "Initialising the store file://$work/store, then backing up to it"
rdr init-store
rdr backup
snapshot > "$work/before.txt"
rdr list
rdr verify latest
rdr status

log "Losing the node: registry stopped, database dropped, config directories deleted"
"$work/registry-ctl" stop
PGPASSWORD=$password dropdb dtr
rm -rf "$node/var/local/dtr" "$node/usr/local/etc/dtr"

log "Restoring"
rdr restore latest

log "Checking"
snapshot > "$work/after.txt"
if ! diff -u "$work/before.txt" "$work/after.txt"; then
  echo "FAILED: the restored node differs from the backed-up one (diff above)." >&2
  exit 1
fi
curl -fsS "http://127.0.0.1:$regport/v2/" >/dev/null
rdr drill latest
echo "OK: the database is identical after restore: $(grep -c '^' "$work/before.txt") facts and row hashes (scripts' oracle: tests/RegistryDR.Oracle)"
echo "OK: every path under the config directories has the same name bytes, contents, mode, owner, mtime (ns), link target, hard links, ACLs and xattrs"
echo "OK: the registry answers http://127.0.0.1:$regport/v2/ after restore"
