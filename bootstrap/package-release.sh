#!/usr/bin/env bash
# package-release.sh - builds the release tarball that cloudformation/registry.yaml deploys and
# prints its SHA-256 (the template's ArtifactSha256) and the commands that upload and deploy it.
#
#   bootstrap/package-release.sh [OUTPUT.tar.gz]
#
#   default OUTPUT: .artifacts/release/registry-dr.tar.gz
#
# The tarball holds, at its top level:
#   registry-dr            a self-contained, single-file linux-x64 build of src/RegistryDR.Cli: the
#                          .NET runtime and ASP.NET Core are inside it, so the node needs no .NET
#                          install and never uses one it happens to have (docs/decisions.md);
#   registry-dr.pdb, RegistryDR.pdb   symbols, so a crash report has file names and line numbers;
#   RELEASE                what this is: version, commit, runtime identifier, the registry's version;
#   bootstrap/             this directory's node scripts and units (the user data runs
#                          bootstrap/user-data.sh from it);
#   registry/docker-registry   Docker's distribution registry (Debian's docker-registry build), for
#                          the template's reference node (NodeSetup=reference), with its licence in
#                          registry/copyright. It needs glibc 2.34 or later (Amazon Linux 2023 has
#                          2.34). Taken from REGISTRYDR_REGISTRY_BINARY (default
#                          /usr/bin/docker-registry, Debian package docker-registry).
#
# Environment: REGISTRYDR_REGISTRY_BINARY, REGISTRYDR_REGISTRY_COPYRIGHT (default
# /usr/share/doc/docker-registry/copyright).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
output=${1:-$repo/.artifacts/release/registry-dr.tar.gz}
if [[ $# -gt 1 ]]; then
  echo "usage: bootstrap/package-release.sh [OUTPUT.tar.gz]" >&2
  exit 2
fi
if [[ "$output" != /* ]]; then output="$PWD/$output"; fi
registry_binary=${REGISTRYDR_REGISTRY_BINARY:-/usr/bin/docker-registry}
registry_copyright=${REGISTRYDR_REGISTRY_COPYRIGHT:-/usr/share/doc/docker-registry/copyright}
rid=linux-x64

for file in "$registry_binary" "$registry_copyright"; do
  if [[ ! -f "$file" ]]; then
    echo "error: $file does not exist: install Debian's docker-registry (apt-get install docker-registry) or set REGISTRYDR_REGISTRY_BINARY / REGISTRYDR_REGISTRY_COPYRIGHT" >&2
    exit 1
  fi
done
registry_version=$("$registry_binary" --version 2>&1 | head -n 1) || {
  echo "error: $registry_binary --version failed: $registry_version" >&2
  exit 1
}
# "github.com/docker/distribution 2.8.2+ds1": the version without the program path it starts with.
registry_version=${registry_version#"$registry_binary" }

stage=$(mktemp -d)
trap 'rm -rf -- "$stage"' EXIT

# --artifacts-path keeps this build's bin/ and obj/ out of the source tree, so a release build
# never changes what the next `dotnet build` or `dotnet test` of the working tree restores.
echo "== dotnet publish src/RegistryDR.Cli (self-contained, single file, $rid)"
dotnet publish "$repo/src/RegistryDR.Cli" --configuration Release --runtime "$rid" --self-contained \
  -p:PublishSingleFile=true --artifacts-path "$stage/build" --output "$stage/release"
if [[ ! -x "$stage/release/registry-dr" ]]; then
  echo "error: the publish output has no executable registry-dr" >&2
  exit 1
fi
version=$("$stage/release/registry-dr" --version)

mkdir "$stage/release/bootstrap" "$stage/release/registry"
for file in registry-dr-boot.sh user-data.sh reference-node.sh registry-dr-bootstrap.service registry-dr-worker.service README.md; do
  install -m "$([[ "$file" == *.sh ]] && echo 0755 || echo 0644)" "$repo/bootstrap/$file" "$stage/release/bootstrap/$file"
done
install -m 0755 "$registry_binary" "$stage/release/registry/docker-registry"
install -m 0644 "$registry_copyright" "$stage/release/registry/copyright"
printf 'registry-dr %s\nruntime-identifier %s\nself-contained true\nregistry %s\n' \
  "$version" "$rid" "$registry_version" >"$stage/release/RELEASE"
chmod 0644 "$stage/release/RELEASE"

mkdir -p "$(dirname "$output")"
# Owner root and a fixed order: the same inputs give the same listing on every machine.
tar -C "$stage/release" --owner=0 --group=0 --numeric-owner --sort=name -czf "$output.tmp" .
mv -f "$output.tmp" "$output"
sha=$(sha256sum "$output" | cut -d' ' -f1)

echo "release: $output ($(du -h "$output" | cut -f1))"
echo "version: $version"
echo "sha256:  $sha"
echo "upload:  aws s3 cp '$output' s3://ARTIFACT-BUCKET/registry-dr/registry-dr-$sha.tar.gz"
echo "deploy:  ... --parameter-overrides ArtifactBucket=ARTIFACT-BUCKET ArtifactKey=registry-dr/registry-dr-$sha.tar.gz ArtifactSha256=$sha"
