#!/usr/bin/env bash
# registry-dr-boot.sh - the whole boot sequence of a RegistryDR node:
#   1. install the pinned RegistryDR build (download, check its SHA-256, extract) into
#      $REGISTRYDR_INSTALL_ROOT/<sha256>/ and point $REGISTRYDR_INSTALL_ROOT/current at it;
#   2. install the configuration;
#   3. run `registry-dr bootstrap` (the agent: restore the newest valid backup, start the
#      registry, wait for health, complete the launch lifecycle action, signal CloudFormation);
#   4. only if that succeeded, start the scheduled-backup worker.
# Run by registry-dr-bootstrap.service (from EC2 user data), or by hand / by tests without systemd.
# Idempotent: a build already installed is not downloaded again, and an instance that already
# bootstrapped does not run the agent again (see REGISTRYDR_FORCE_BOOTSTRAP).
#
# Inputs (environment variables):
#   REGISTRYDR_ARTIFACT_URL     required. The release tarball: s3://bucket/key.tar.gz (fetched with
#                               `aws s3 cp`) or file:///path.tar.gz, made by package-release.sh: a
#                               self-contained registry-dr executable and a RELEASE file at its top level.
#   REGISTRYDR_ARTIFACT_SHA256  required. Its SHA-256 (64 hex digits). A download that does not match
#                               is refused and nothing is installed.
#   REGISTRYDR_INSTALL_ROOT     default /opt/registry-dr. Builds go to <root>/<sha256>/, <root>/current
#                               links to the active one, <root>/bin/registry-dr is the launcher.
#   REGISTRYDR_CONFIG_SOURCE    optional. A JSON file installed as the configuration (mode 0600).
#                               Default: leave $REGISTRYDR_CONFIG_PATH as it is (it must exist).
#   REGISTRYDR_CONFIG_PATH      default /etc/registry-dr/registry-dr.json.
#   REGISTRYDR_CONFIG_GROUP     optional. Continuous mode: the PostgreSQL server's group (postgres). The
#                               configuration is then installed 0640 root:<group> and its directory made
#                               0710 root:<group>, so that archive_command (registry-dr wal-push, run by
#                               the server) can read it; it holds no secret. Empty: 0600, root only.
#   REGISTRYDR_LOG              default /var/log/registry-dr-boot.log. Every step is logged there and
#                               on stdout, with a UTC timestamp.
#   REGISTRYDR_SYSTEMD          1: start the worker with `systemctl enable --now registry-dr-worker.service`;
#                               0: start it in the background with nohup ($REGISTRYDR_RUN_DIR/worker.pid,
#                               $REGISTRYDR_RUN_DIR/worker.log). Default: 1 when /run/systemd/system exists.
#   REGISTRYDR_RUN_DIR          default /run/registry-dr: worker.pid, worker.log, boot.lock, and
#                               agent-invoked (created just before the agent runs, so that user data
#                               knows whether the agent has reported a failure itself).
#   REGISTRYDR_STATE_DIR        default /var/lib/registry-dr: the bootstrap-succeeded marker.
#   REGISTRYDR_AWS              default `aws`: the AWS CLI (v2) for s3:// downloads and failure reports.
#   REGISTRYDR_S3_ENDPOINT, REGISTRYDR_AUTOSCALING_ENDPOINT, REGISTRYDR_CLOUDFORMATION_ENDPOINT
#                               optional --endpoint-url for those calls (an S3-compatible server, the
#                               tests' stand-ins). Empty: the AWS CLI's own (regional) endpoints.
#   REGISTRYDR_STACK_NAME, REGISTRYDR_AUTOSCALING_GROUP_NAME   who to report to when the agent cannot
#                               report itself (below). Empty: nothing can be reported (a node outside AWS).
#   REGISTRYDR_LIFECYCLE_HOOK_NAME  default registry-dr-launch; REGISTRYDR_SIGNAL_RESOURCE default
#                               RegistryGroup: the launch hook and the logical id CloudFormation waits on.
#   REGISTRYDR_NODE_STATE_FILE  default $REGISTRYDR_STATE_DIR/node-state.json: the agent's Agent:StateFile.
#   REGISTRYDR_INSTANCE_ID      default: cloud-init's /var/lib/cloud/data/instance-id (empty elsewhere).
#                               The bootstrap-succeeded marker is only honoured for the same instance
#                               (an AMI baked from a live node must still restore).
#   REGISTRYDR_FORCE_BOOTSTRAP  1: run the agent even though this instance already bootstrapped. The
#                               agent always restores the newest backup: on a live node that rolls the
#                               registry back to it, so this is off by default.
#
# Only the release's own registry-dr executable is ever run (self-contained: a dotnet on the image,
# of whatever version, is never used).
#
# When `registry-dr bootstrap` fails, the worker is NOT started. If the agent concluded "Failed" in
# its node state file during this run, it has reported ABANDON and FAILURE itself. Otherwise it could
# not start or died before it could report (missing or broken executable, exec format error, bad
# configuration, a crash): this script then completes the launch lifecycle action with ABANDON and
# signals FAILURE itself, at once, so Auto Scaling replaces the node now instead of after the hook's
# HeartbeatTimeout. A refusal because nothing is waiting (no pending lifecycle action; a stack that is
# not in a create or update, i.e. an unplanned replacement) is logged as such, not as an error.
#
# Exit status: 0 on success; the agent's own non-zero status when `registry-dr bootstrap` failed;
# 1 when a step before the agent failed; 2 for missing or invalid inputs.
set -euo pipefail

artifact_url=${REGISTRYDR_ARTIFACT_URL:-}
artifact_sha=${REGISTRYDR_ARTIFACT_SHA256:-}
install_root=${REGISTRYDR_INSTALL_ROOT:-/opt/registry-dr}
config_source=${REGISTRYDR_CONFIG_SOURCE:-}
config_path=${REGISTRYDR_CONFIG_PATH:-/etc/registry-dr/registry-dr.json}
config_group=${REGISTRYDR_CONFIG_GROUP:-}
log_file=${REGISTRYDR_LOG:-/var/log/registry-dr-boot.log}
run_dir=${REGISTRYDR_RUN_DIR:-/run/registry-dr}
state_dir=${REGISTRYDR_STATE_DIR:-/var/lib/registry-dr}
node_state_file=${REGISTRYDR_NODE_STATE_FILE:-$state_dir/node-state.json}
aws_cli=${REGISTRYDR_AWS:-aws}
s3_endpoint=${REGISTRYDR_S3_ENDPOINT:-}
autoscaling_endpoint=${REGISTRYDR_AUTOSCALING_ENDPOINT:-}
cloudformation_endpoint=${REGISTRYDR_CLOUDFORMATION_ENDPOINT:-}
stack_name=${REGISTRYDR_STACK_NAME:-}
group_name=${REGISTRYDR_AUTOSCALING_GROUP_NAME:-}
hook_name=${REGISTRYDR_LIFECYCLE_HOOK_NAME:-registry-dr-launch}
signal_resource=${REGISTRYDR_SIGNAL_RESOURCE:-RegistryGroup}
force_bootstrap=${REGISTRYDR_FORCE_BOOTSTRAP:-0}
use_systemd=${REGISTRYDR_SYSTEMD:-}
if [[ -z "$use_systemd" ]]; then
  if [[ -d /run/systemd/system ]]; then use_systemd=1; else use_systemd=0; fi
fi
worker_unit=registry-dr-worker.service
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

mkdir -p "$(dirname "$log_file")"
exec > >(tee -a "$log_file") 2>&1

log() { printf '%s registry-dr-boot[%d]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*"; }
die() {
  log "ERROR: $*"
  exit 1
}
usage_error() {
  log "ERROR: $*"
  exit 2
}

incoming=""
on_exit() {
  local status=$?
  if [[ -n "$incoming" ]]; then rm -rf -- "$incoming"; fi
  log "finished with exit status $status"
}
trap on_exit EXIT

log "start: artifact ${artifact_url:-<unset>}, install root $install_root, config $config_path, systemd=$use_systemd"

# --- inputs -------------------------------------------------------------------------------
[[ -n "$artifact_url" ]] || usage_error "REGISTRYDR_ARTIFACT_URL is not set (s3://bucket/key.tar.gz or file:///path.tar.gz)"
[[ -n "$artifact_sha" ]] || usage_error "REGISTRYDR_ARTIFACT_SHA256 is not set: a build is only installed when its SHA-256 is pinned"
artifact_sha=${artifact_sha,,}
[[ "$artifact_sha" =~ ^[0-9a-f]{64}$ ]] || usage_error "REGISTRYDR_ARTIFACT_SHA256 '$artifact_sha' is not 64 hex digits"
case "$artifact_url" in
  s3://?*/?*) ;;
  file:///?*) ;;
  *) usage_error "REGISTRYDR_ARTIFACT_URL '$artifact_url' is neither s3://bucket/key nor file:///absolute/path" ;;
esac
[[ "$use_systemd" == 0 || "$use_systemd" == 1 ]] || usage_error "REGISTRYDR_SYSTEMD must be 0 or 1, not '$use_systemd'"
[[ "$install_root" == /* ]] || usage_error "REGISTRYDR_INSTALL_ROOT must be absolute: '$install_root'"
if [[ -n "$config_source" && ! -f "$config_source" ]]; then
  usage_error "REGISTRYDR_CONFIG_SOURCE $config_source does not exist"
fi
if [[ -n "$config_group" ]] && ! getent group "$config_group" >/dev/null; then
  usage_error "REGISTRYDR_CONFIG_GROUP '$config_group' is not a group on this node (the PostgreSQL server's group, for continuous mode)"
fi

# One run at a time.
mkdir -p "$run_dir"
exec 9>"$run_dir/boot.lock"
flock -n 9 || die "another registry-dr-boot.sh is running (lock $run_dir/boot.lock)"

# --- 1. the pinned build --------------------------------------------------------------------
download() {
  local url=$1 destination=$2
  case "$url" in
    s3://*)
      local endpoint_args=()
      if [[ -n "$s3_endpoint" ]]; then endpoint_args=(--endpoint-url "$s3_endpoint"); fi
      "$aws_cli" "${endpoint_args[@]}" s3 cp --only-show-errors "$url" "$destination"
      ;;
    file://*)
      local path=${url#file://}
      [[ -f "$path" ]] || die "artifact $path does not exist"
      cp -- "$path" "$destination"
      ;;
  esac
}

build_dir="$install_root/$artifact_sha"
install_marker="$build_dir/.registry-dr-install"
if [[ -f "$install_marker" ]]; then
  log "step 1: build $artifact_sha is already installed in $build_dir: nothing to download"
else
  if [[ -e "$build_dir" ]]; then
    log "step 1: removing the incomplete $build_dir"
    rm -rf -- "$build_dir"
  fi
  mkdir -p "$install_root"
  incoming=$(mktemp -d "$install_root/.incoming.XXXXXX")
  log "step 1: downloading $artifact_url"
  download "$artifact_url" "$incoming/artifact.tar.gz" || die "download of $artifact_url failed"
  actual_sha=$(sha256sum "$incoming/artifact.tar.gz" | cut -d' ' -f1)
  if [[ "$actual_sha" != "$artifact_sha" ]]; then
    die "SHA-256 mismatch for $artifact_url: expected $artifact_sha, got $actual_sha. Refusing to install it; nothing was installed."
  fi
  log "step 1: SHA-256 verified ($actual_sha); extracting"
  mkdir "$incoming/build"
  tar -xzf "$incoming/artifact.tar.gz" -C "$incoming/build" --no-same-owner || die "cannot extract $artifact_url"
  [[ -f "$incoming/build/registry-dr" && -x "$incoming/build/registry-dr" ]] ||
    die "$artifact_url has no executable registry-dr at its top level: build the release with bootstrap/package-release.sh"
  # A framework-dependent build would look for a .NET runtime on the image, and could find one of
  # another version: only a self-contained release is installed.
  grep -qxF 'self-contained true' "$incoming/build/RELEASE" 2>/dev/null ||
    die "$artifact_url is not a self-contained release (its RELEASE file does not say 'self-contained true'): build it with bootstrap/package-release.sh"
  printf 'sha256=%s\nsource=%s\ninstalled=%s\n' "$artifact_sha" "$artifact_url" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$incoming/build/.registry-dr-install"
  mv -T "$incoming/build" "$build_dir"
  rm -rf -- "$incoming"
  incoming=""
  log "step 1: installed $build_dir"
fi

build_changed=0
current="$install_root/current"
if [[ "$(readlink "$current" 2>/dev/null || true)" != "$artifact_sha" ]]; then
  ln -sfn "$artifact_sha" "$current.new"
  mv -Tf "$current.new" "$current"
  build_changed=1
  log "step 1: $current -> $artifact_sha"
else
  log "step 1: $current already points at $artifact_sha"
fi

# The launcher every caller uses (this script, the systemd units, operators): the release's own
# self-contained executable, never a dotnet from the image.
launcher="$install_root/bin/registry-dr"
launcher_text=$(printf '#!/bin/bash\n# Written by registry-dr-boot.sh: runs the current RegistryDR build (self-contained).\nexec %s "$@"\n' "$(printf '%q' "$current/registry-dr")")
if [[ ! -f "$launcher" || "$(<"$launcher")" != "$launcher_text" ]]; then
  mkdir -p "$install_root/bin"
  printf '%s\n' "$launcher_text" >"$launcher.new"
  chmod 0755 "$launcher.new"
  mv -f "$launcher.new" "$launcher"
  log "step 1: wrote the launcher $launcher"
fi

# --- 2. configuration -----------------------------------------------------------------------
if [[ -n "$config_source" ]]; then
  config_dir=$(dirname "$config_path")
  if [[ ! -d "$config_dir" ]]; then
    mkdir -p "$config_dir"
    chmod 0700 "$config_dir"
  fi
  config_mode=0600
  config_owner=()
  if [[ -n "$config_group" ]]; then
    config_mode=0640
    config_owner=(-g "$config_group")
    chgrp "$config_group" "$config_dir"
    chmod 0710 "$config_dir"
  fi
  if [[ -f "$config_path" ]] && cmp -s "$config_source" "$config_path"; then
    if [[ -n "$config_group" ]]; then chgrp "$config_group" "$config_path"; fi
    chmod "$config_mode" "$config_path"
    log "step 2: $config_path is already up to date (mode $config_mode)"
  else
    install "${config_owner[@]}" -m "$config_mode" "$config_source" "$config_path.new"
    mv -f "$config_path.new" "$config_path"
    log "step 2: installed $config_source as $config_path (mode $config_mode${config_group:+, group $config_group})"
  fi
else
  [[ -f "$config_path" ]] || die "no configuration: $config_path does not exist and REGISTRYDR_CONFIG_SOURCE is not set"
  log "step 2: using the existing $config_path"
fi

# Reports a node that cannot bootstrap: ABANDON for the launch lifecycle action (Auto Scaling then
# terminates the instance and launches another) and FAILURE for CloudFormation. Each call is
# bounded and independent; a refusal because nothing waits for it is expected and only logged.
aws_report() {
  local what=$1 endpoint=$2
  shift 2
  local args=("$@") output status
  if [[ -n "$endpoint" ]]; then args+=(--endpoint-url "$endpoint"); fi
  set +e
  output=$(AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=4 timeout 120 "$aws_cli" --cli-connect-timeout 10 --cli-read-timeout 30 "${args[@]}" 2>&1)
  status=$?
  set -e
  if [[ $status -eq 0 ]]; then
    log "reported $what"
  elif [[ "$output" == *"No active Lifecycle Action found"* ]]; then
    log "no launch lifecycle action is pending for this instance (already completed, or timed out): nothing to abandon"
  elif [[ "$output" == *"cannot be signaled"* || "$output" == *"is not in a state to accept"* ]]; then
    log "CloudFormation is not waiting for a signal from this instance (an unplanned replacement, outside a stack create or update): nothing to signal"
  else
    log "WARNING: could not report $what (exit status $status): $(printf '%s' "$output" | tr '\n' ' ')"
  fi
}

report_failure() {
  if [[ -z "$instance_id" ]]; then
    log "WARNING: no instance id (REGISTRYDR_INSTANCE_ID): cannot report the failure; the launch hook's HeartbeatTimeout will abandon the instance"
    return 0
  fi
  if [[ -n "$group_name" && -n "$hook_name" ]]; then
    aws_report "ABANDON for lifecycle hook $hook_name of $group_name" "$autoscaling_endpoint" \
      autoscaling complete-lifecycle-action --lifecycle-hook-name "$hook_name" \
      --auto-scaling-group-name "$group_name" --instance-id "$instance_id" --lifecycle-action-result ABANDON
  else
    log "no REGISTRYDR_AUTOSCALING_GROUP_NAME: no lifecycle action to abandon"
  fi
  if [[ -n "$stack_name" && -n "$signal_resource" ]]; then
    aws_report "FAILURE for $signal_resource of stack $stack_name" "$cloudformation_endpoint" \
      cloudformation signal-resource --stack-name "$stack_name" --logical-resource-id "$signal_resource" \
      --unique-id "$instance_id" --status FAILURE
  else
    log "no REGISTRYDR_STACK_NAME: no CloudFormation signal to send"
  fi
}

# --- 3. the agent ---------------------------------------------------------------------------
instance_id=${REGISTRYDR_INSTANCE_ID-}
if [[ -z "${REGISTRYDR_INSTANCE_ID+set}" && -r /var/lib/cloud/data/instance-id ]]; then
  instance_id=$(</var/lib/cloud/data/instance-id)
fi
done_marker="$state_dir/bootstrap-succeeded"
if [[ "$force_bootstrap" != 1 && -f "$done_marker" ]] && grep -qxF "instance=$instance_id" "$done_marker"; then
  log "step 3: this instance already bootstrapped ($(grep '^at=' "$done_marker" || true)); not running the agent again (it would restore the last backup over the live registry; REGISTRYDR_FORCE_BOOTSTRAP=1 forces it)"
else
  rm -f "$done_marker"
  # From here on this script, not the user data, is responsible for reporting a failure.
  : >"$run_dir/agent-invoked"
  state_before=""
  if [[ -f "$node_state_file" ]]; then state_before=$(<"$node_state_file"); fi
  log "step 3: running registry-dr bootstrap --config $config_path"
  set +e
  "$launcher" bootstrap --config "$config_path"
  agent_status=$?
  set -e
  if [[ $agent_status -ne 0 ]]; then
    state_after=""
    if [[ -f "$node_state_file" ]]; then state_after=$(<"$node_state_file"); fi
    if [[ "$state_after" != "$state_before" && "$state_after" =~ \"status\":\ *\"Failed\" ]]; then
      log "step 3: registry-dr bootstrap FAILED with exit status $agent_status; it recorded the failure in $node_state_file and reported ABANDON/FAILURE itself. The worker is NOT started."
    else
      state_status="no node state written by this run"
      if [[ "$state_after" != "$state_before" && "$state_after" =~ \"status\":\ *\"([A-Za-z]+)\" ]]; then
        state_status="node state ${BASH_REMATCH[1]}"
      fi
      log "step 3: registry-dr bootstrap could not start or died before it could report (exit status $agent_status, $state_status): reporting ABANDON and FAILURE now. The worker is NOT started."
      report_failure
    fi
    exit "$agent_status"
  fi
  mkdir -p "$state_dir"
  printf 'instance=%s\nat=%s\nbuild=%s\n' "$instance_id" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$artifact_sha" >"$done_marker.new"
  mv -f "$done_marker.new" "$done_marker"
  log "step 3: bootstrap succeeded"
fi

# --- 4. the worker --------------------------------------------------------------------------
if [[ "$use_systemd" == 1 ]]; then
  if [[ "$install_root" != /opt/registry-dr ]]; then
    log "WARNING: $worker_unit runs /opt/registry-dr/bin/registry-dr, but REGISTRYDR_INSTALL_ROOT is $install_root"
  fi
  if ! systemctl cat "$worker_unit" >/dev/null 2>&1; then
    [[ -f "$script_dir/$worker_unit" ]] || die "$worker_unit is not installed and $script_dir/$worker_unit does not exist"
    install -m 0644 "$script_dir/$worker_unit" "/etc/systemd/system/$worker_unit"
    systemctl daemon-reload
    log "step 4: installed /etc/systemd/system/$worker_unit"
  fi
  systemctl enable "$worker_unit"
  if [[ $build_changed -eq 1 ]]; then
    systemctl restart "$worker_unit"
    log "step 4: (re)started $worker_unit on build $artifact_sha"
  else
    systemctl start "$worker_unit"
    log "step 4: $worker_unit is running"
  fi
  exit 0
fi

pid_file="$run_dir/worker.pid"
worker_log="$run_dir/worker.log"
if [[ -f "$pid_file" ]]; then
  old_pid=$(<"$pid_file")
  if [[ "$old_pid" =~ ^[0-9]+$ ]] && kill -0 "$old_pid" 2>/dev/null; then
    if [[ $build_changed -eq 0 ]]; then
      log "step 4: the worker is already running (pid $old_pid)"
      exit 0
    fi
    log "step 4: stopping the worker (pid $old_pid) to start the new build"
    kill -TERM "$old_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$old_pid" 2>/dev/null || break
      sleep 1
    done
    if kill -0 "$old_pid" 2>/dev/null; then kill -KILL "$old_pid" 2>/dev/null || true; fi
  fi
  rm -f "$pid_file"
fi
log "step 4: starting the worker in the background (nohup; log $worker_log)"
nohup "$launcher" worker --config "$config_path" >>"$worker_log" 2>&1 </dev/null 9>&- &
worker_pid=$!
printf '%s\n' "$worker_pid" >"$pid_file"
sleep 1
if ! kill -0 "$worker_pid" 2>/dev/null; then
  rm -f "$pid_file"
  die "the worker exited at once; the end of $worker_log: $(tail -n 5 "$worker_log" 2>/dev/null | tr '\n' ' ')"
fi
log "step 4: worker running (pid $worker_pid, pid file $pid_file)"
