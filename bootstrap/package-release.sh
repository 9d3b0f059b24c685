#!/usr/bin/env bash
# package-release.sh - builds the release tarball that cloudformation/registry.yaml deploys:
# a `dotnet publish` of src/RegistryDR.Cli (registry-dr.dll, its dependencies, and the
# registry-dr apphost) at the top level, plus this bootstrap/ directory under bootstrap/
# (the user data stub runs bootstrap/user-data.sh from it). Prints the SHA-256 to pass as
# ArtifactSha256 and the command that uploads it.
#
#   bootstrap/package-release.sh [OUTPUT.tar.gz] [dotnet publish options...]
#
#   default OUTPUT: .artifacts/release/registry-dr.tar.gz (framework-dependent: the node needs
#   the .NET 10 runtime). For a node without one: --self-contained -r linux-x64
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
output=${1:-$repo/.artifacts/release/registry-dr.tar.gz}
shift || true
if [[ "$output" != /* ]]; then output="$PWD/$output"; fi

stage=$(mktemp -d)
trap 'rm -rf -- "$stage"' EXIT

echo "== dotnet publish src/RegistryDR.Cli $*"
dotnet publish "$repo/src/RegistryDR.Cli" --configuration Release --output "$stage/publish" "$@"
[[ -f "$stage/publish/registry-dr.dll" ]] || { echo "error: the publish output has no registry-dr.dll" >&2; exit 1; }

mkdir "$stage/publish/bootstrap"
for file in registry-dr-boot.sh user-data.sh registry-dr-bootstrap.service registry-dr-worker.service README.md; do
  install -m "$([[ "$file" == *.sh ]] && echo 0755 || echo 0644)" "$repo/bootstrap/$file" "$stage/publish/bootstrap/$file"
done

mkdir -p "$(dirname "$output")"
tar -C "$stage/publish" --owner=0 --group=0 --numeric-owner --sort=name -czf "$output.tmp" .
mv -f "$output.tmp" "$output"
sha=$(sha256sum "$output" | cut -d' ' -f1)

echo "release: $output"
echo "sha256:  $sha"
echo "upload:  aws s3 cp '$output' s3://ARTIFACT-BUCKET/registry-dr/registry-dr-$sha.tar.gz"
echo "deploy:  ... --parameter-overrides ArtifactBucket=ARTIFACT-BUCKET ArtifactKey=registry-dr/registry-dr-$sha.tar.gz ArtifactSha256=$sha"
