#!/usr/bin/env bash
# Lints RegistryDR's CloudFormation templates with AWS's cfn-lint (the Python one), at ONE pinned
# version so that a lint result means the same on every machine and in CI.
#
#   scripts/lint-cloudformation.sh            every template in cloudformation/ (*.yaml, *.yml)
#   scripts/lint-cloudformation.sh FILE...    just these templates
#
# cfn-lint 1.x checks every property against AWS's current resource schemas, Ref/GetAtt/Sub
# targets, DependsOn and Condition targets, CreationPolicy/UpdatePolicy keys, Rules and the
# intrinsic functions (Fn::And, Fn::If...). Errors and warnings fail the run; informational
# findings are printed and do not.
#
# Exit status: 0 when every template is clean, 1 when any template has a finding that fails
# the run, 2 on bad usage or when cfn-lint is missing or not the pinned version.
set -euo pipefail

# The version the templates are linted with. Change it here (and in cloudformation/README.md)
# deliberately, after linting the templates with the new version (scripts/install-prerequisites.sh
# installs this version too).
pinned=1.51.0

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cfn="$repo/cloudformation"
install_hint="install it with: python3 -m pip install 'cfn-lint==$pinned'"

if ! command -v cfn-lint >/dev/null 2>&1; then
  echo "error: cfn-lint is not installed; $install_hint" >&2
  exit 2
fi
version_line=$(cfn-lint --version 2>&1) || {
  echo "error: 'cfn-lint --version' failed: $version_line; $install_hint" >&2
  exit 2
}
installed=${version_line#cfn-lint }
if [[ "$installed" != "$pinned" ]]; then
  echo "error: cfn-lint $pinned is required, but '$(command -v cfn-lint)' is '$version_line'; $install_hint" >&2
  exit 2
fi

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

echo "== cfn-lint $installed (pinned $pinned)"
for template in "${templates[@]}"; do
  echo "== ${template#"$repo"/}"
done
# One cfn-lint process for all templates: loading AWS's schemas is most of its run time. Each
# finding names its file. The exit status is a bit mask: 2 errors, 4 warnings, 8 informational.
set +e
cfn-lint --format parseable -- "${templates[@]}"
status=$?
set -e
if (((status & ~8) != 0)); then
  echo "cfn-lint: errors found" >&2
  exit 1
fi
echo "cfn-lint: ${#templates[@]} template(s) clean"
