#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, runs the MSTest suite (which starts its
# own PostgreSQL cluster and Ceph RGW on loopback), lints the shell scripts, and ends with one
# line "N passed, N failed" read from the test results.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-prerequisites.sh

results=.artifacts/test-results
rm -rf "$results"
mkdir -p "$results"

echo "== shellcheck"
mapfile -t scripts < <(git ls-files '*.sh' 2>/dev/null || find . -name '*.sh' -not -path './.artifacts/*')
shellcheck "${scripts[@]}" .ci/run

echo "== dotnet test"
set +e
dotnet test RegistryDR.sln --configuration Release \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" 2>&1 | tee "$results/console.log" | grep -a -E '^\s+(Passed|Failed|Skipped) |Error Message|error|Total|Passed!|Failed!' 
status=${PIPESTATUS[0]}
set -e

trx=$(find "$results" -name '*.trx' | head -n 1)
if [[ -z "$trx" ]]; then
  echo "no test results were written (build failure?); see $results/console.log" >&2
  tail -n 40 "$results/console.log" >&2
  exit 1
fi
# The TRX counters are the source of truth for the summary line CI reads.
passed=$(grep -o '<Counters [^>]*' "$trx" | grep -o 'passed="[0-9]*"' | grep -o '[0-9]*')
failed=$(grep -o '<Counters [^>]*' "$trx" | grep -o 'failed="[0-9]*"' | grep -o '[0-9]*')
echo "${passed} passed, ${failed} failed"
if [[ $status -ne 0 || $failed -ne 0 ]]; then exit 1; fi
