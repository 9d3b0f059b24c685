#!/usr/bin/env bash
# Lints RegistryDR's CloudFormation templates with npm cfn-lint.
#
#   scripts/lint-cloudformation.sh            every template in cloudformation/ (*.yaml, *.yml)
#   scripts/lint-cloudformation.sh FILE...    just these templates
#
# The tools are pinned in cloudformation/package.json + package-lock.json (cfn-lint and
# @aws-cdk/cfnspec). `npm ci` runs only when cloudformation/node_modules is missing or was
# installed from a different package-lock.json.
#
# cfn-lint 1.9.x bundles an old CloudFormation resource specification that rejects newer,
# valid properties (OwnershipControls, BucketKeyEnabled, NoncurrentVersionExpiration,
# InstanceMetadataTags...). On every run this script points it at the newer specification
# shipped by @aws-cdk/cfnspec: cfn-lint reads data/aws_resources_specification.json, so that
# file is replaced by cfnspec's spec/specification.json when (and only when) they differ. A
# fresh `npm ci` restores the bundled file and the next run replaces it again: idempotent.
#
# cloudformation/tools/check-references.js then checks what cfn-lint 1.9.x ignores (resource
# attributes: DependsOn and Condition targets, CreationPolicy/UpdatePolicy keys).
#
# Exit status: 0 when every template is clean, 1 when any template has an error, 2 on bad usage.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cfn="$repo/cloudformation"

for tool in node npm sha256sum flock; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is required (Debian: apt-get install nodejs npm coreutils util-linux)" >&2
    exit 2
  fi
done

templates=()
if [[ $# -gt 0 ]]; then
  for file in "$@"; do
    if [[ ! -f "$file" ]]; then
      echo "error: no such template: $file" >&2
      exit 2
    fi
    templates+=("$(realpath "$file")")
  done
else
  mapfile -t templates < <(find "$cfn" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
  if [[ ${#templates[@]} -eq 0 ]]; then
    echo "error: no templates in $cfn" >&2
    exit 2
  fi
fi

# One installer at a time (two test runs, or a developer and a test).
exec 9<"$cfn/package-lock.json"
flock 9

stamp="$cfn/node_modules/.registry-dr-package-lock.sha256"
wanted=$(sha256sum "$cfn/package-lock.json" | cut -d' ' -f1)
installed=""
if [[ -f "$stamp" ]]; then installed=$(<"$stamp"); fi
if [[ ! -x "$cfn/node_modules/.bin/cfn-lint" || "$installed" != "$wanted" ]]; then
  echo "== npm ci in cloudformation/ (node_modules missing or stale)"
  (cd "$cfn" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$wanted" >"$stamp"
fi

spec="$cfn/node_modules/@aws-cdk/cfnspec/spec/specification.json"
bundled="$cfn/node_modules/cfn-lint/data/aws_resources_specification.json"
if [[ ! -f "$spec" || ! -f "$bundled" ]]; then
  echo "error: $spec or $bundled is missing; delete cloudformation/node_modules and run again" >&2
  exit 2
fi
if ! cmp -s "$spec" "$bundled"; then
  cp "$spec" "$bundled.tmp.$$"
  mv -f "$bundled.tmp.$$" "$bundled"
fi
spec_version=$(node -e 'process.stdout.write(String(require(process.argv[1]).ResourceSpecificationVersion))' "$bundled")
lint_version=$(node -e 'process.stdout.write(require(process.argv[1]).version)' "$cfn/node_modules/cfn-lint/package.json")
echo "== cfn-lint $lint_version with resource specification $spec_version (@aws-cdk/cfnspec)"

failed=0
for template in "${templates[@]}"; do
  echo "== ${template#"$repo"/}"
  # FORCE_COLOR=0: plain text in logs and test output.
  if ! FORCE_COLOR=0 "$cfn/node_modules/.bin/cfn-lint" validate "$template" --verbose; then
    failed=1
  fi
  if ! node "$cfn/tools/check-references.js" "$template"; then
    failed=1
  fi
done

if [[ $failed -ne 0 ]]; then
  echo "cfn-lint: errors found" >&2
  exit 1
fi
echo "cfn-lint: ${#templates[@]} template(s) clean"
