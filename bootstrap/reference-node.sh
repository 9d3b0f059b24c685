#!/usr/bin/env bash
# reference-node.sh - turns a stock Amazon Linux 2023 instance into RegistryDR's reference node
# (the template's NodeSetup=reference, its default): PostgreSQL 15 from AL2023's own packages
# (postgresql15-server) holding the registry's metadata database, and Docker's distribution
# registry (the binary shipped in the release under registry/) serving TLS on 443 with its blobs in
# the stack's image bucket. Run by user-data.sh before registry-dr's configuration is written and
# before the agent restores; idempotent (a second run changes nothing that is already right).
#
# What it leaves for registry-dr:
#   - postgresql.service enabled and running, listening on 127.0.0.1:$RDR_DB_PORT only, password
#     (SCRAM) login over TCP, peer login for the postgres OS user on the local socket; the role
#     $RDR_DB_USER (postgres) has the password in $RDR_PASSWORD_FILE; database $RDR_DB_NAME exists.
#     The password is the stack's (a Secrets Manager secret or the DatabasePassword parameter), the
#     same on every replacement.
#   - /usr/local/bin/docker-registry, /etc/docker-registry/config.yml (storage: s3, the image
#     bucket under /$RDR_IMAGE_PREFIX; http on :443 with the TLS pair in /etc/docker-registry/tls/,
#     a self-signed one made here when none exists; debug and health on 127.0.0.1:5001, so
#     Registry:HealthUrl is http://127.0.0.1:5001/debug/health), and
#     docker-registry.service ENABLED but not started: the agent starts it once it restored. The
#     unit reads /etc/registry-dr/registry-storage.env (written by user-data.sh): this stack's image
#     bucket, region and key override the restored config.yml's, so a node in the recovery region
#     serves the replica bucket.
#     /etc/docker-registry is the node's config directory (Config:Directories): backed up and
#     restored, so a replacement serves the same certificate. Put your own certificate there.
#
# Inputs (environment; user-data.sh sets them):
#   RDR_DB_PORT, RDR_DB_NAME, RDR_DB_USER (must be postgres), RDR_PASSWORD_FILE (0600, first line)
#   RDR_REGION, RDR_IMAGE_BUCKET, RDR_IMAGE_PREFIX, RDR_SSE (S3|Kms), RDR_KMS_KEY_ID (optional)
#   RDR_RELEASE_DIR      the extracted release (registry/docker-registry in it)
#   RDR_REGISTRY_HOSTNAMES optional: extra DNS names for the self-signed certificate (comma-separated,
#                        e.g. the load balancer's DNS name)
#   RDR_DATABASE_MODE    optional: logical (default) or continuous. Continuous also sets the server
#                        up for WAL archiving (docs/configuration.md, "Continuous mode: what the
#                        PostgreSQL server needs"): wal_level replica, archive_mode on, archive_command
#                        '/opt/registry-dr/bin/registry-dr wal-push %p' (the launcher registry-dr-boot.sh
#                        writes), archive_timeout, and a pg_hba.conf line for pg_basebackup's replication
#                        connection. Logical mode leaves archiving off.
#   RDR_ARCHIVE_TIMEOUT_SECONDS  continuous: archive_timeout in seconds (default 60, 1-3600)
#   RDR_ROOT             optional prefix for every file written (tests); the configuration itself
#                        names the real paths
# Needs: dnf, systemctl, runuser, postgresql-setup (from postgresql15-server), openssl.
set -euo pipefail

log() { printf '%s registry-dr reference-node: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() {
  log "ERROR: $*"
  exit 1
}

for name in RDR_DB_PORT RDR_DB_NAME RDR_DB_USER RDR_PASSWORD_FILE RDR_REGION RDR_IMAGE_BUCKET RDR_IMAGE_PREFIX RDR_SSE RDR_RELEASE_DIR; do
  [[ -n "${!name:-}" ]] || die "$name is not set"
done
[[ "$RDR_DB_USER" == postgres ]] || die "RDR_DB_USER is '$RDR_DB_USER': the reference node's registry-dr connects as the superuser postgres (DatabaseUser=postgres)"
[[ "$RDR_DB_PORT" =~ ^[0-9]+$ ]] || die "RDR_DB_PORT '$RDR_DB_PORT' is not a port number"
[[ "$RDR_DB_NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "RDR_DB_NAME '$RDR_DB_NAME' is not a plain database name"
[[ -s "$RDR_PASSWORD_FILE" ]] || die "no database password in $RDR_PASSWORD_FILE (DatabasePasswordSecretArn or DatabasePassword)"
database_mode=${RDR_DATABASE_MODE:-logical}
[[ "$database_mode" == logical || "$database_mode" == continuous ]] ||
  die "RDR_DATABASE_MODE must be logical or continuous, not '$database_mode'"
archive_timeout_seconds=${RDR_ARCHIVE_TIMEOUT_SECONDS:-60}
if [[ ! "$archive_timeout_seconds" =~ ^[1-9][0-9]*$ ]] || ((archive_timeout_seconds > 3600)); then
  die "RDR_ARCHIVE_TIMEOUT_SECONDS must be a whole number of seconds from 1 to 3600, not '$archive_timeout_seconds'"
fi
registry_source=$RDR_RELEASE_DIR/registry/docker-registry
[[ -x "$registry_source" ]] || die "the release has no registry/docker-registry: build it with bootstrap/package-release.sh"

root=${RDR_ROOT:-}
pgdata=/var/lib/pgsql/data
registry_dir=/etc/docker-registry
registry_bin=/usr/local/bin/docker-registry
unit=docker-registry.service

# --- packages -----------------------------------------------------------------------------------
log "installing postgresql15-server postgresql15 openssl"
dnf install -y -q postgresql15-server postgresql15 openssl

# --- PostgreSQL 15 ------------------------------------------------------------------------------
if [[ ! -f "$root$pgdata/PG_VERSION" ]]; then
  log "initialising the cluster in $pgdata"
  postgresql-setup --initdb
else
  log "the cluster in $pgdata already exists ($(<"$root$pgdata/PG_VERSION"))"
fi
conf=$root$pgdata/registry-dr.conf
cat >"$conf.new" <<EOF
# Written by RegistryDR's reference-node.sh.
listen_addresses = '127.0.0.1'
port = $RDR_DB_PORT
password_encryption = 'scram-sha-256'
EOF
if [[ "$database_mode" == continuous ]]; then
  # archive_mode and wal_level take effect at the restart below; the restart runs on every run, so a
  # node switched from logical to continuous (or back) picks the change up. The archive_command is
  # registry-dr's launcher: until registry-dr-boot.sh has written it, and until the node restored
  # (wal-push refuses WAL of a node that did not), PostgreSQL keeps the WAL and retries.
  cat >>"$conf.new" <<EOF
# Continuous protection (DatabaseMode=continuous): every WAL file goes to the backup store.
wal_level = replica
archive_mode = on
archive_command = '/opt/registry-dr/bin/registry-dr wal-push %p'
archive_timeout = ${archive_timeout_seconds}s
EOF
fi
hba=$root$pgdata/pg_hba.conf
cat >"$hba.new" <<'EOF'
# Written by RegistryDR's reference-node.sh: the postgres OS user on the local socket; everyone
# else, registry-dr included, with a password over loopback TCP.
local   all   postgres                 peer
local   all   all                      reject
host    all   all        127.0.0.1/32  scram-sha-256
EOF
if [[ "$database_mode" == continuous ]]; then
  # pg_basebackup (each base backup) connects for replication, which 'all' does not cover.
  printf '%s\n' "host    replication   postgres   127.0.0.1/32  scram-sha-256" >>"$hba.new"
fi
for file in "$conf" "$hba"; do
  chown postgres:postgres "$file.new"
  chmod 0600 "$file.new"
  mv -f "$file.new" "$file"
done
if ! grep -qxF "include_if_exists = 'registry-dr.conf'" "$root$pgdata/postgresql.conf"; then
  printf "\n# RegistryDR reference node (reference-node.sh)\ninclude_if_exists = 'registry-dr.conf'\n" >>"$root$pgdata/postgresql.conf"
fi
systemctl enable postgresql.service
# restart, not start: a cluster already running must pick up the port and pg_hba.conf.
systemctl restart postgresql.service
ready=0
for _ in $(seq 1 120); do
  if pg_isready -q -h 127.0.0.1 -p "$RDR_DB_PORT"; then
    ready=1
    break
  fi
  sleep 1
done
[[ $ready -eq 1 ]] || die "PostgreSQL did not accept connections on 127.0.0.1:$RDR_DB_PORT within 120 s (journalctl -u postgresql)"

# The password goes to psql through a file only postgres can read, never through argv.
scratch=$(mktemp -d)
trap 'rm -rf -- "$scratch"' EXIT
chown postgres:postgres "$scratch"
chmod 0700 "$scratch"
install -o postgres -g postgres -m 0600 "$RDR_PASSWORD_FILE" "$scratch/password"
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$RDR_DB_PORT" -d postgres <<EOF
\\set password \`head -n 1 $scratch/password\`
ALTER ROLE postgres PASSWORD :'password';
\\unset password
SELECT 'CREATE DATABASE "$RDR_DB_NAME"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$RDR_DB_NAME') \\gexec
EOF
rm -rf -- "$scratch"
log "PostgreSQL 15 serves 127.0.0.1:$RDR_DB_PORT; role postgres has the stack's password; database $RDR_DB_NAME exists"
if [[ "$database_mode" == continuous ]]; then
  log "continuous mode: wal_level replica, archive_mode on, archive_command registry-dr wal-push, archive_timeout ${archive_timeout_seconds}s; replication over 127.0.0.1 for postgres"
fi

# --- the registry -------------------------------------------------------------------------------
install -d -m 0755 "$root/usr/local/bin"
install -m 0755 "$registry_source" "$root$registry_bin.new"
mv -f "$root$registry_bin.new" "$root$registry_bin"
install -d -m 0700 "$root$registry_dir" "$root$registry_dir/tls"
if [[ ! -f "$root$registry_dir/tls/registry.crt" || ! -f "$root$registry_dir/tls/registry.key" ]]; then
  names="DNS:localhost,IP:127.0.0.1"
  IFS=',' read -r -a extra <<<"${RDR_REGISTRY_HOSTNAMES:-}"
  for name in "${extra[@]}"; do
    if [[ -n "$name" ]]; then names="$names,DNS:$name"; fi
  done
  log "no TLS certificate in $registry_dir/tls: making a self-signed one for $names (replace it with your own)"
  (
    umask 077
    openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=registry" -addext "subjectAltName=$names" \
      -keyout "$root$registry_dir/tls/registry.key" -out "$root$registry_dir/tls/registry.crt" 2>/dev/null
  )
fi
chmod 0600 "$root$registry_dir/tls/registry.key"
chmod 0644 "$root$registry_dir/tls/registry.crt"

encrypt_lines="    encrypt: true"
if [[ "$RDR_SSE" == Kms && -n "${RDR_KMS_KEY_ID:-}" ]]; then
  encrypt_lines=$(printf '%s\n    keyid: %s' "$encrypt_lines" "$RDR_KMS_KEY_ID")
fi
cat >"$root$registry_dir/config.yml.new" <<EOF
# Written by RegistryDR's reference-node.sh (Docker distribution registry 2.x configuration).
version: 0.1
log:
  level: info
storage:
  s3:
    region: $RDR_REGION
    bucket: $RDR_IMAGE_BUCKET
    rootdirectory: /$RDR_IMAGE_PREFIX
$encrypt_lines
    secure: true
    v4auth: true
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: :443
  tls:
    certificate: $registry_dir/tls/registry.crt
    key: $registry_dir/tls/registry.key
  debug:
    addr: 127.0.0.1:5001
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 30s
    threshold: 3
EOF
chmod 0600 "$root$registry_dir/config.yml.new"
mv -f "$root$registry_dir/config.yml.new" "$root$registry_dir/config.yml"

install -d -m 0755 "$root/etc/systemd/system"
cat >"$root/etc/systemd/system/$unit.new" <<EOF
# Written by RegistryDR's reference-node.sh. Started by registry-dr once the node restored (or
# first-booted), and at every later boot.
[Unit]
Description=Docker distribution registry (RegistryDR reference node)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
# This node's bucket, region and key (written by user-data.sh), over whatever the restored
# config.yml names: after a failover that is the primary's bucket in the other region.
EnvironmentFile=/etc/registry-dr/registry-storage.env
ExecStart=$registry_bin serve $registry_dir/config.yml
Restart=on-failure
RestartSec=5s
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6

[Install]
WantedBy=multi-user.target
EOF
chmod 0644 "$root/etc/systemd/system/$unit.new"
mv -f "$root/etc/systemd/system/$unit.new" "$root/etc/systemd/system/$unit"
systemctl daemon-reload
systemctl enable "$unit"
log "installed $registry_bin ($("$root$registry_bin" --version 2>&1 | head -n 1)) and $unit (enabled; registry-dr starts it)"
