#!/usr/bin/env bash
# user-data.sh - the body of a RegistryDR node's EC2 user data, for Amazon Linux 2023.
#
# cloudformation/registry.yaml's user data is a short stub: it downloads the release tarball
# pinned by ArtifactSha256, checks it, extracts it, and runs this file (bootstrap/ inside the
# release) with the stack's values in RDR_* variables. If this script, or anything before the
# registry-dr agent runs, fails, the stub reports ABANDON and FAILURE itself; once the agent has
# run it reports its own result (see /run/registry-dr/agent-invoked).
#
# It: installs prerequisites with dnf (PostgreSQL client tools, the AWS CLI, the CloudWatch agent;
# no .NET: the release is self-contained); writes the database password file (0600) from Secrets
# Manager when a secret is given (the stub has already written it when the password came as a
# NoEcho parameter); on a reference node (RDR_NODE_SETUP=reference) runs reference-node.sh, which
# installs PostgreSQL 15 and the registry; writes the registry-dr configuration from the RDR_*
# values; installs registry-dr-boot.sh and the two systemd units; writes /etc/registry-dr/boot.env;
# configures and starts the CloudWatch agent (registry-dr's EMF metrics log, and the root disk's
# used_percent); and finally runs registry-dr-boot.sh through registry-dr-bootstrap.service, which
# ends by starting registry-dr-worker.service.
#
# Inputs (environment; the stub sets them from template parameters):
#   RDR_STACK_NAME, RDR_REGION, RDR_GROUP_NAME   the stack, its region and the Auto Scaling group
#   RDR_ARTIFACT_URL, RDR_ARTIFACT_SHA256         the release (s3://...) and its SHA-256
#   RDR_ARTIFACT_FILE                             optional: the stub's already checked download
#   RDR_RELEASE_DIR                               optional: where the release is extracted
#                                                 (default: the directory above this script)
#   RDR_STORE_URL                                 Store:Url, s3://bucket/prefix
#   RDR_SSE, RDR_KMS_KEY_ID                       Store:ServerSideEncryption (S3|Kms) and KmsKeyId
#   RDR_ALLOW_FIRST_BOOT                          Agent:AllowFirstBoot, "true" or "false"
#   RDR_ROLE                                      optional: Agent:Role, "primary" (default) or "failover"
#                                                 (the template's Role standby or failover)
#   RDR_CHECK_REGISTRY_URL                        optional: Agent:CheckRegistryAfterRestore, the
#                                                 registry's base URL to check after a restore
#   RDR_CRON                                      Schedule:Cron
#   RDR_DB_HOST, RDR_DB_PORT, RDR_DB_NAME, RDR_DB_USER, RDR_DB_BIN_DIRECTORY   Database:*
#   RDR_DB_PASSWORD_SECRET_ARN                    optional Secrets Manager secret with the password
#   RDR_REGISTRY_SERVICE                          the registry's systemd unit (stop/start commands)
#   RDR_HEALTH_URL                                Registry:HealthUrl
#   RDR_MONITORING_URL                            optional: a Monitoring:Urls entry for the load
#                                                 balancer's health check (http://0.0.0.0:PORT);
#                                                 empty = registry-dr listens on loopback only
#   RDR_METRICS_LOG_GROUP                         optional: CloudWatch Logs group the CloudWatch
#                                                 agent ships the EMF metrics log to; empty = the
#                                                 agent is not configured
#   RDR_POSTGRES_CLIENT_PACKAGE                   dnf package with pg_dump etc. (postgresql15)
#   RDR_NODE_SETUP                                reference (default): install PostgreSQL 15 and the
#                                                 registry with reference-node.sh; image: the image has them
#   RDR_IMAGE_BUCKET, RDR_IMAGE_PREFIX            the registry's blob store: this stack's image bucket, or in
#                                                 the recovery region (Role standby/failover) the replica
#                                                 bucket; written to /etc/registry-dr/registry-storage.env
#   RDR_REGISTRY_HOSTNAMES                        optional DNS names for the reference node's certificate
#   RDR_CONFIG_DIRECTORIES                        optional comma-separated Config:Directories (empty:
#                                                 registry-dr's defaults, DTR's directories)
#   RDR_LAUNCH_HOOK_NAME, RDR_TERMINATION_HOOK_NAME   Agent:LifecycleHookName, Agent:TerminationHookName
#                                                 (defaults registry-dr-launch, registry-dr-terminate)
#   RDR_HEARTBEAT_INTERVAL_SECONDS                Agent:HeartbeatInterval, in seconds (default 300)
#   RDR_DATABASE_MODE                             optional: Database:Mode, "logical" (default) or
#                                                 "continuous" (base backups + WAL archiving)
#   RDR_ARCHIVE_TIMEOUT_SECONDS                   continuous: Continuous:ArchiveTimeout and the server's
#                                                 archive_timeout, in seconds (default 60, 1-3600)
#   RDR_PG_DATA_DIRECTORY, RDR_PG_SERVICE         continuous: Continuous:DataDirectory and the systemd
#                                                 unit of Continuous:ServerStop/StartCommand (defaults
#                                                 /var/lib/pgsql/data and postgresql.service: AL2023's,
#                                                 the reference node's)
#   RDR_PG_OS_USER                                continuous: the PostgreSQL server's OS user (default
#                                                 postgres), which runs archive_command (registry-dr
#                                                 wal-push): its group may read the configuration and
#                                                 the node state file
#   RDR_SKIP_PACKAGES=1                           do not run dnf (an image that has everything)
#   RDR_ROOT, RDR_NO_SYSTEMD=1                    for a dry run (the tests): write every file under
#                                                 RDR_ROOT and stop before systemctl
set -euo pipefail

log() { printf '%s registry-dr user-data: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() {
  log "ERROR: $*"
  exit 1
}

for name in RDR_STACK_NAME RDR_REGION RDR_GROUP_NAME RDR_ARTIFACT_URL RDR_ARTIFACT_SHA256 RDR_STORE_URL \
  RDR_SSE RDR_ALLOW_FIRST_BOOT RDR_CRON RDR_DB_HOST RDR_DB_PORT RDR_DB_NAME RDR_DB_USER \
  RDR_REGISTRY_SERVICE RDR_HEALTH_URL RDR_NODE_SETUP; do
  [[ -n "${!name:-}" ]] || die "$name is not set"
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
release_dir=${RDR_RELEASE_DIR:-$(dirname "$here")}
root=${RDR_ROOT:-}
config_dir=$root/etc/registry-dr
state_dir=$root/var/lib/registry-dr
install_dir=$root/opt/registry-dr/bootstrap
unit_dir=$root/etc/systemd/system
password_file=$config_dir/db-password
case "$RDR_NODE_SETUP" in
  reference | image) ;;
  *) die "RDR_NODE_SETUP must be reference or image, not '$RDR_NODE_SETUP'" ;;
esac
heartbeat_seconds=${RDR_HEARTBEAT_INTERVAL_SECONDS:-300}
[[ "$heartbeat_seconds" =~ ^[1-9][0-9]*$ ]] || die "RDR_HEARTBEAT_INTERVAL_SECONDS must be a whole number of seconds, not '$heartbeat_seconds'"
database_mode=${RDR_DATABASE_MODE:-logical}
case "$database_mode" in
  logical | continuous) ;;
  *) die "RDR_DATABASE_MODE must be logical or continuous (the template's DatabaseMode), not '$database_mode'" ;;
esac
archive_timeout_seconds=${RDR_ARCHIVE_TIMEOUT_SECONDS:-60}
if [[ ! "$archive_timeout_seconds" =~ ^[1-9][0-9]*$ ]] || ((archive_timeout_seconds > 3600)); then
  die "RDR_ARCHIVE_TIMEOUT_SECONDS must be a whole number of seconds from 1 to 3600 (the template's ArchiveTimeoutSeconds), not '$archive_timeout_seconds'"
fi
pg_os_user=${RDR_PG_OS_USER:-postgres}
export AWS_REGION=$RDR_REGION AWS_DEFAULT_REGION=$RDR_REGION

umask 077
install -d -m 0700 "$config_dir" "$state_dir" "$state_dir/staging"

# --- prerequisites ----------------------------------------------------------------------------
if [[ "${RDR_SKIP_PACKAGES:-0}" != 1 ]]; then
  packages=("${RDR_POSTGRES_CLIENT_PACKAGE:-postgresql15}" awscli-2 tar gzip util-linux python3 curl)
  log "installing ${packages[*]}"
  dnf install -y -q "${packages[@]}"
  # Metrics must never stop a node from restoring: without the agent, the node still restores and
  # backs up, and the backup-staleness alarm (no data = breaching) says the metrics are missing.
  if [[ -n "${RDR_METRICS_LOG_GROUP:-}" ]] && ! dnf install -y -q amazon-cloudwatch-agent; then
    log "WARNING: could not install amazon-cloudwatch-agent; backup metrics will not reach CloudWatch"
  fi
fi

# --- the database password --------------------------------------------------------------------
if [[ -n "${RDR_DB_PASSWORD_SECRET_ARN:-}" ]]; then
  log "reading the database password from Secrets Manager ($RDR_DB_PASSWORD_SECRET_ARN)"
  secret=$(aws secretsmanager get-secret-value --secret-id "$RDR_DB_PASSWORD_SECRET_ARN" \
    --query SecretString --output text) || die "cannot read $RDR_DB_PASSWORD_SECRET_ARN"
  # A JSON secret {"password": "..."} (the RDS style) or the password itself. Passed on stdin,
  # never on a command line.
  password=$(printf '%s' "$secret" | python3 -c '
import json, sys
text = sys.stdin.read()
try:
    value = json.loads(text)
except ValueError:
    value = None
sys.stdout.write(value["password"] if isinstance(value, dict) and "password" in value else text)
')
  unset secret
  printf '%s\n' "$password" >"$password_file.new"
  unset password
  chmod 0600 "$password_file.new"
  mv -f "$password_file.new" "$password_file"
elif [[ -f "$password_file" ]]; then
  chmod 0600 "$password_file"
  log "using the database password file the user data stub wrote"
else
  log "WARNING: no database password (neither DatabasePasswordSecretArn nor DatabasePassword): Database:PasswordFile is not set"
fi

# --- the registry's storage, whatever the restored configuration says ---------------------------
# The registry's configuration is restored from the backup, so in the recovery region it names the
# primary's image bucket. Docker's distribution registry reads REGISTRY_<SECTION>_<KEY> variables
# as overrides of its configuration file ("Override specific configuration options", distribution
# docs); the reference node's unit reads this file, so the node always serves this stack's image
# bucket (the replica, after a failover) in this region, with this stack's key. Node-local: it is
# not under a config directory, so no restore carries another region's values in.
if [[ -n "${RDR_IMAGE_BUCKET:-}" ]]; then
  storage_env=$config_dir/registry-storage.env
  {
    echo "# Written by user-data.sh for stack $RDR_STACK_NAME: the registry's S3 storage on this node."
    echo "REGISTRY_STORAGE_S3_REGION=$RDR_REGION"
    echo "REGISTRY_STORAGE_S3_BUCKET=$RDR_IMAGE_BUCKET"
    echo "REGISTRY_STORAGE_S3_ROOTDIRECTORY=/${RDR_IMAGE_PREFIX:-registry}"
    echo "REGISTRY_STORAGE_S3_ENCRYPT=true"
    # Empty = SSE-S3; a key named by the restored configuration is another region's and must not be used.
    if [[ "$RDR_SSE" == Kms ]]; then echo "REGISTRY_STORAGE_S3_KEYID=${RDR_KMS_KEY_ID:-}"; else echo "REGISTRY_STORAGE_S3_KEYID="; fi
  } >"$storage_env.new"
  chmod 0600 "$storage_env.new"
  mv -f "$storage_env.new" "$storage_env"
  log "wrote $storage_env (the registry's storage: s3://$RDR_IMAGE_BUCKET/${RDR_IMAGE_PREFIX:-registry} in $RDR_REGION)"
fi

# --- the reference node: PostgreSQL 15 and the registry -------------------------------------------
if [[ "$RDR_NODE_SETUP" == reference ]]; then
  [[ -f "$password_file" ]] || die "a reference node needs the database password (DatabasePasswordSecretArn or DatabasePassword)"
  log "setting up the reference node (PostgreSQL 15 and the registry): reference-node.sh"
  RDR_PASSWORD_FILE=$password_file RDR_RELEASE_DIR=$release_dir RDR_DATABASE_MODE=$database_mode \
    RDR_ARCHIVE_TIMEOUT_SECONDS=$archive_timeout_seconds bash "$here/reference-node.sh" ||
    die "reference-node.sh failed"
fi

# --- the registry-dr configuration ------------------------------------------------------------
generated=$config_dir/registry-dr.json.generated
config_password_file=""
if [[ -f "$password_file" ]]; then config_password_file=$password_file; fi
RDR_PASSWORD_FILE=$config_password_file \
RDR_STAGING=$state_dir/staging RDR_STATE_FILE=$state_dir/node-state.json \
RDR_MONITORING_URL=${RDR_MONITORING_URL:-} RDR_HEARTBEAT_SECONDS=$heartbeat_seconds \
RDR_DATABASE_MODE=$database_mode RDR_ARCHIVE_TIMEOUT_SECONDS=$archive_timeout_seconds \
RDR_PG_DATA_DIRECTORY=${RDR_PG_DATA_DIRECTORY:-/var/lib/pgsql/data} RDR_PG_SERVICE=${RDR_PG_SERVICE:-postgresql.service} \
  python3 - "$generated" <<'PYTHON'
import json, os, sys

e = os.environ
database = {
    "Host": e["RDR_DB_HOST"], "Port": int(e["RDR_DB_PORT"]), "Name": e["RDR_DB_NAME"],
    "User": e["RDR_DB_USER"],
}
if e.get("RDR_PASSWORD_FILE"):
    database["PasswordFile"] = e["RDR_PASSWORD_FILE"]
if e.get("RDR_DB_BIN_DIRECTORY"):
    database["BinDirectory"] = e["RDR_DB_BIN_DIRECTORY"]
store = {"Url": e["RDR_STORE_URL"], "Region": e["RDR_REGION"], "ServerSideEncryption": e["RDR_SSE"]}
if e["RDR_SSE"] == "Kms" and e.get("RDR_KMS_KEY_ID"):
    store["KmsKeyId"] = e["RDR_KMS_KEY_ID"]
def timespan(seconds):
    # A TimeSpan, hh:mm:ss.
    seconds = int(seconds)
    return "%02d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)

if e["RDR_DATABASE_MODE"] == "continuous":
    database["Mode"] = "Continuous"
service = e["RDR_REGISTRY_SERVICE"]
config = {
    "Database": database,
    "Registry": {
        "StopCommand": ["systemctl", "stop", service],
        "StartCommand": ["systemctl", "start", service],
        "HealthUrl": e["RDR_HEALTH_URL"],
    },
    "Store": store,
    "Schedule": {"Cron": e["RDR_CRON"], "RequireRestoredNode": True},
    "Restore": {"StagingDirectory": e["RDR_STAGING"]},
    "Agent": {
        "Region": e["RDR_REGION"],
        "StackName": e["RDR_STACK_NAME"],
        "AutoScalingGroupName": e["RDR_GROUP_NAME"],
        "LifecycleHookName": e.get("RDR_LAUNCH_HOOK_NAME") or "registry-dr-launch",
        "TerminationHookName": e.get("RDR_TERMINATION_HOOK_NAME") or "registry-dr-terminate",
        "SignalResource": "RegistryGroup",
        "AllowFirstBoot": e["RDR_ALLOW_FIRST_BOOT"] == "true",
        "StateFile": e["RDR_STATE_FILE"],
        # How often the agent records a lifecycle heartbeat.
        "HeartbeatInterval": timespan(e["RDR_HEARTBEAT_SECONDS"]),
    },
}
if e["RDR_DATABASE_MODE"] == "continuous":
    # Restore stops the server, swaps the data directory and starts it again.
    pg_service = e["RDR_PG_SERVICE"]
    config["Continuous"] = {
        "DataDirectory": e["RDR_PG_DATA_DIRECTORY"],
        "ArchiveTimeout": timespan(e["RDR_ARCHIVE_TIMEOUT_SECONDS"]),
        "ServerStopCommand": ["systemctl", "stop", pg_service],
        "ServerStartCommand": ["systemctl", "start", pg_service],
    }
if e.get("RDR_ROLE") == "failover":
    config["Agent"]["Role"] = "failover"
if e.get("RDR_CHECK_REGISTRY_URL"):
    config["Agent"]["CheckRegistryAfterRestore"] = e["RDR_CHECK_REGISTRY_URL"]
directories = [d for d in e.get("RDR_CONFIG_DIRECTORIES", "").split(",") if d]
if directories:
    config["Config"] = {"Directories": directories}
if e.get("RDR_MONITORING_URL"):
    # Loopback for a local Prometheus or curl, plus the load balancer's health-check port.
    config["Monitoring"] = {"Urls": ["http://127.0.0.1:9465", e["RDR_MONITORING_URL"]]}
with open(sys.argv[1] + ".new", "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.chmod(sys.argv[1] + ".new", 0o600)
os.replace(sys.argv[1] + ".new", sys.argv[1])
PYTHON
log "wrote $generated (installed as $config_dir/registry-dr.json by registry-dr-boot.sh)"

# --- continuous mode: what archive_command (registry-dr wal-push, as the server's user) reads ------
# It reads the configuration (no secret in it: the password stays in the root-only db-password) and
# the node state file (its fencing generation), so their directories are traversable (0710) and the
# configuration readable (0640, installed so by registry-dr-boot.sh: REGISTRYDR_CONFIG_GROUP) by the
# server's group; nothing else in them is. docs/configuration.md lists these permissions.
config_group=""
if [[ "$database_mode" == continuous ]]; then
  getent group "$pg_os_user" >/dev/null ||
    die "continuous mode: there is no group '$pg_os_user' (RDR_PG_OS_USER, the PostgreSQL server's user, which runs archive_command): install the server first"
  config_group=$pg_os_user
  chgrp "$config_group" "$config_dir" "$state_dir"
  chmod 0710 "$config_dir" "$state_dir"
  log "continuous mode: $config_dir and $state_dir are traversable by group $config_group (registry-dr wal-push runs as $pg_os_user)"
fi

# --- boot script and units --------------------------------------------------------------------
umask 022
install -d -m 0755 "$install_dir" "$unit_dir"
install -m 0755 "$here/registry-dr-boot.sh" "$install_dir/registry-dr-boot.sh"
install -m 0755 "$here/reference-node.sh" "$install_dir/reference-node.sh"
if [[ -f "$here/README.md" ]]; then install -m 0644 "$here/README.md" "$install_dir/README.md"; fi
install -m 0644 "$here/registry-dr-bootstrap.service" "$unit_dir/registry-dr-bootstrap.service"
install -m 0644 "$here/registry-dr-worker.service" "$unit_dir/registry-dr-worker.service"
umask 077

artifact_url=$RDR_ARTIFACT_URL
if [[ -n "${RDR_ARTIFACT_FILE:-}" && -f "$RDR_ARTIFACT_FILE" ]]; then
  # Already downloaded and checked by the stub: registry-dr-boot.sh checks it again, from disk.
  artifact_url=file://$RDR_ARTIFACT_FILE
fi
cat >"$config_dir/boot.env.new" <<EOF
# Written by user-data.sh for stack $RDR_STACK_NAME; read by registry-dr-bootstrap.service
# and registry-dr-worker.service. Release: $RDR_ARTIFACT_URL
REGISTRYDR_ARTIFACT_URL=$artifact_url
REGISTRYDR_ARTIFACT_SHA256=$RDR_ARTIFACT_SHA256
REGISTRYDR_CONFIG_SOURCE=$generated
REGISTRYDR_CONFIG_PATH=$config_dir/registry-dr.json
REGISTRYDR_NODE_STATE_FILE=$state_dir/node-state.json
REGISTRYDR_STACK_NAME=$RDR_STACK_NAME
REGISTRYDR_AUTOSCALING_GROUP_NAME=$RDR_GROUP_NAME
REGISTRYDR_LIFECYCLE_HOOK_NAME=${RDR_LAUNCH_HOOK_NAME:-registry-dr-launch}
REGISTRYDR_SIGNAL_RESOURCE=RegistryGroup
REGISTRYDR_CONFIG_GROUP=$config_group
AWS_REGION=$RDR_REGION
EOF
mv -f "$config_dir/boot.env.new" "$config_dir/boot.env"
log "wrote $config_dir/boot.env"

# --- the CloudWatch agent ---------------------------------------------------------------------
# registry-dr appends one embedded-metric-format (EMF) JSON line per backup to its metrics log
# (Monitoring:EmfLogPath). The agent ships each line as a log event, and CloudWatch Logs extracts
# the RegistryDR/* metrics the template's BackupStaleAlarm watches (docs/monitoring.md). It also
# publishes the root disk's used_percent (RegistryDR/Node) for RootDiskAlarm.
emf_log=/var/log/registry-dr/metrics.emf.log
cwagent_dir=/opt/aws/amazon-cloudwatch-agent
cwagent_config=$root$cwagent_dir/etc/amazon-cloudwatch-agent.json
if [[ -n "${RDR_METRICS_LOG_GROUP:-}" ]]; then
  umask 022
  install -d -m 0755 "$root/var/log/registry-dr" "$(dirname "$cwagent_config")"
  RDR_EMF_LOG=$emf_log python3 - "$cwagent_config" <<'PYTHON'
import json, os, sys

e = os.environ
config = {
    # cwagent (the package's own user) can read the log: registry-dr writes it 0644 in a 0755 directory.
    "agent": {"region": e["RDR_REGION"], "run_as_user": "cwagent"},
    "logs": {
        "logs_collected": {
            "files": {
                "collect_list": [{
                    "file_path": e["RDR_EMF_LOG"],
                    "log_group_name": e["RDR_METRICS_LOG_GROUP"],
                    "log_stream_name": "{instance_id}",
                }]
            }
        },
        # Seconds between uploads: the alarm counts one-minute periods.
        "force_flush_interval": 5,
    },
    # The root disk, for the template's RootDiskAlarm: used_percent of / in RegistryDR/Node, with
    # a Stack dimension (not the host or instance: the series must survive node replacements).
    "metrics": {
        "namespace": "RegistryDR/Node",
        "metrics_collected": {
            "disk": {
                "measurement": ["used_percent"],
                "resources": ["/"],
                "drop_device": True,
                "metrics_collection_interval": 60,
                "append_dimensions": {"Stack": e["RDR_STACK_NAME"]},
            }
        },
        "aggregation_dimensions": [["Stack", "path"]],
    },
}
config["agent"]["omit_hostname"] = True
with open(sys.argv[1] + ".new", "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(sys.argv[1] + ".new", sys.argv[1])
PYTHON
  umask 077
  log "wrote $cwagent_config (ships $emf_log to log group $RDR_METRICS_LOG_GROUP)"
  if [[ "${RDR_NO_SYSTEMD:-0}" != 1 ]]; then
    if [[ -x $cwagent_dir/bin/amazon-cloudwatch-agent-ctl ]] &&
      "$cwagent_dir/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s -c "file:$cwagent_config"; then
      log "started the CloudWatch agent"
    else
      log "WARNING: the CloudWatch agent did not start; backup metrics will not reach CloudWatch"
    fi
  fi
else
  log "no RDR_METRICS_LOG_GROUP: the CloudWatch agent is not configured; metrics stay on the node ($emf_log, /metrics)"
fi

# --- hand over to the bootstrap unit ----------------------------------------------------------
if [[ "${RDR_NO_SYSTEMD:-0}" == 1 ]]; then
  log "RDR_NO_SYSTEMD=1: not starting registry-dr-bootstrap.service"
  exit 0
fi
systemctl daemon-reload
log "starting registry-dr-bootstrap.service (restore, then the worker); follow it with: journalctl -fu registry-dr-bootstrap"
if ! systemctl start registry-dr-bootstrap.service; then
  journalctl -u registry-dr-bootstrap.service -n 30 --no-pager || true
  die "registry-dr-bootstrap.service failed (its log: /var/log/registry-dr-boot.log)"
fi
log "done: the node restored, is in service, and registry-dr-worker.service is running"
