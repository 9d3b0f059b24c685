#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, runs the MSTest suite (which starts its
# own PostgreSQL cluster and Ceph RGW on loopback), lints the shell scripts, and ends with one
# line "N passed, N failed, N skipped" read from the test results (skipped tests listed after it).
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
# The TRX counters are the source of truth for the summary line CI reads ("N passed, N failed"
# first). Inconclusive and not-executed tests are counted as skipped and listed by name: a test
# skips only for a limit of the machine (no mknod, no tmpfs); a component the project installs
# that is missing makes its tests fail, not skip.
counter() { grep -o '<Counters [^>]*' "$trx" | grep -o "$1=\"[0-9]*\"" | grep -o '[0-9]*' || echo 0; }
passed=$(counter passed)
failed=$(( $(counter failed) + $(counter error) + $(counter timeout) + $(counter aborted) ))
skipped=$(( $(counter inconclusive) + $(counter notExecuted) + $(counter notRunnable) ))
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
if [[ $skipped -ne 0 ]]; then
  echo "skipped:"
  grep -oE '<UnitTestResult [^>]*outcome="(Inconclusive|NotExecuted|NotRunnable)"' "$trx" \
    | sed -E 's/.* testName="([^"]*)".*outcome="([^"]*)".*/  \1 (\2)/'
fi
if [[ $failed -ne 0 ]]; then
  # The console filter above keeps one line per test; here is each failure's message and the
  # top of its stack, read from the TRX, so a CI log alone says what broke.
  echo "failed:"
  python3 - "$trx" <<'PY'
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
for r in ET.parse(sys.argv[1]).getroot().iterfind(".//t:UnitTestResult", ns):
    if r.get("outcome") not in ("Failed", "Error", "Timeout", "Aborted"):
        continue
    message = r.findtext(".//t:ErrorInfo/t:Message", "", ns).strip()
    stack = r.findtext(".//t:ErrorInfo/t:StackTrace", "", ns).strip().splitlines()[:6]
    print(f"  {r.get('testName')}\n    " + "\n    ".join(message.splitlines()[:12] + stack))
PY
fi
if [[ $status -ne 0 || $failed -ne 0 ]]; then exit 1; fi
