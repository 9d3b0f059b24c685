#!/usr/bin/env bash
# Installs what RegistryDR's tests, demo and benchmark need on a fresh Debian 12 machine:
# PostgreSQL 15, Ceph's RADOS Gateway (the S3 server the tests start), awscli, the Debian
# docker-registry and skopeo, shellcheck, acl and attr (setfacl, setfattr: the tree oracle's
# tests), systemd (systemd-analyze verifies the units), promtool, and pgBackRest + GNU time for
# the benchmark (which CI runs once at a tiny size). Only missing packages are installed, so it
# is cheap to run every time. Needs root (apt-get).
set -euo pipefail

packages=(
  postgresql-15 postgresql-client-15
  ceph-mon ceph-osd ceph-mgr radosgw ceph-common uuid-runtime
  awscli
  docker-registry skopeo
  shellcheck
  acl attr
  systemd
  prometheus
  pgbackrest time openssl
)
if [[ $# -gt 0 ]]; then packages=("$@"); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

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
