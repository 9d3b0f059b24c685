#!/usr/bin/env bash
# Installs what RegistryDR's tests, demo and benchmark need on a fresh Debian 12 machine:
# PostgreSQL 15, Ceph's RADOS Gateway (the S3 server the tests start), awscli, the Debian
# docker-registry and skopeo, shellcheck, systemd (systemd-analyze verifies the units), promtool,
# pgBackRest + GNU time for the benchmark (which CI runs once at a tiny size), AWS's cfn-lint (pip)
# for the templates, and acl + attr (setfacl/getfacl/setfattr/getfattr: the config-fidelity tests
# and the tree oracle's own tests set and read ACLs and extended attributes with them). Only
# missing packages are installed, so it is cheap to run every time. Needs root (apt-get).
set -euo pipefail

packages=(
  postgresql-15 postgresql-client-15
  ceph-mon ceph-osd ceph-mgr radosgw ceph-common uuid-runtime
  awscli
  docker-registry skopeo
  shellcheck
  systemd
  prometheus
  pgbackrest time openssl
  acl attr
  zstd
)
if [[ $# -gt 0 ]]; then packages=("$@"); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# AWS's cfn-lint, at the version scripts/lint-cloudformation.sh pins (Python, from PyPI; not a
# Debian package). Best effort: where PyPI cannot be reached the lint says what to install.
cfn_lint_version=$(sed -n 's/^pinned=//p' "$(dirname "${BASH_SOURCE[0]}")/lint-cloudformation.sh")
if [[ $# -eq 0 && "$(cfn-lint --version 2>/dev/null)" != "cfn-lint $cfn_lint_version" ]] && command -v python3 >/dev/null 2>&1; then
  echo "Installing: cfn-lint==$cfn_lint_version (pip)" >&2
  python3 -m pip install --quiet "cfn-lint==$cfn_lint_version" >&2 ||
    echo "warning: could not install cfn-lint $cfn_lint_version; scripts/lint-cloudformation.sh will fail until it is" >&2
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "Installing: ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
  echo "error: these packages are missing and installing them needs root: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
