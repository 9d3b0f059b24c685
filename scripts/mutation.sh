#!/usr/bin/env bash
# Mutation testing of the safety paths with Stryker.NET (the dotnet-stryker tool pinned in
# .config/dotnet-tools.json): each "room" is the code where a wrong line loses data, and the
# tests that must catch it. Not run by CI (a room takes from minutes to hours); the scores are
# recorded in docs/testing.md.
#
# Usage: bash scripts/mutation.sh ROOM... [-- EXTRA STRYKER ARGS]
#        bash scripts/mutation.sh --together ROOM... [-- EXTRA STRYKER ARGS]
#        bash scripts/mutation.sh --list
#   --together: one Stryker run for all the ROOMs (their globs together, their test filters
#   or-ed), scored per room from the json report. Each Stryker run pays a fixed cost (build,
#   initial test run, compiling the project's mutants) of 15-25 minutes on a 2-core machine, so
#   several small rooms are much cheaper together; the per-room scores are the same numbers
#   (each mutant is still tested against the filtered tests that cover it).
#   ROOM: retention | archive-paths | fencing | catalog | restore
#   e.g.  bash scripts/mutation.sh retention
#         bash scripts/mutation.sh restore -- --mutate '**/Restore/RestoreService.cs{480..520}'
#         (a narrower --mutate replaces the room's own, to try the mechanics on a few mutants;
#         Stryker.NET reads {a..b} as CHARACTER offsets into the file, not line numbers: a span
#         given in lines silently selects 0 mutants. Compute offsets, e.g. with python3.)
# Reports (html, json) go to .artifacts/mutation/ROOM/; the last line per room is its score.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A MUTATE FILTER
# Each room's tests are the ones written to catch its mutants, chosen to be quick: Stryker starts a
# test host per mutant and runs every covering test of the filter, so a room whose filter includes
# restores through PostgreSQL (the whole-suite classes that also reach this code) costs minutes per
# mutant on a 2-core machine (measured 2026-12-01: ~5 minutes each). A wider filter can only kill
# more mutants: a room's score here is a lower bound for the whole suite's.
# Retention: which sets the planner keeps, and the pruner that deletes the rest.
MUTATE[retention]='**/Retention/*.cs'
FILTER[retention]='FullyQualifiedName~RegistryDR.Tests.Retention.RetentionPlanner|FullyQualifiedName~RegistryDR.Tests.Retention.PrunerTests|FullyQualifiedName~RegistryDR.Tests.Retention.VerificationRecordTests'
# The archive's path safety: names, link targets and extraction that must never leave the target.
MUTATE[archive-paths]='**/Archive/Internal/EntryNames.cs;**/Archive/Internal/EntryPolicy.cs;**/Archive/Internal/StagingExtractor.cs'
FILTER[archive-paths]='FullyQualifiedName~RegistryDR.Tests.Archive.|FullyQualifiedName~ConfigArchiveFuzzRegressionTests'
# Fencing: the generation ledger that stops a previous writer.
MUTATE[fencing]='**/Fencing/*.cs'
FILTER[fencing]='FullyQualifiedName~GenerationLedgerTests|FullyQualifiedName~CrossRegionFencingTests'
# The catalogue's choice of the newest restorable set.
# The selection itself lives in RestorableSets (one definition of "restorable").
MUTATE[catalog]='**/Backup/BackupCatalog.cs;**/Backup/RestorableSets.cs'
FILTER[catalog]='FullyQualifiedName~BackupCatalogTests|FullyQualifiedName~RestorableSetsTests|FullyQualifiedName~ProtectionStatusTests'
# Restore and its rollback (needs PostgreSQL: slow, one mutant is a restore), with the kill -9 tests
# whose recovery (InterruptedRestore) runs the same rollback from the journal.
MUTATE[restore]='**/Restore/RestoreService.cs'
FILTER[restore]='FullyQualifiedName~RollbackTests|FullyQualifiedName~InterruptedRestoreTests|FullyQualifiedName~VerifyAndRestoreSafetyTests|FullyQualifiedName~Backup.RoundTripTests|FullyQualifiedName~RolesScriptTests'

if [[ ${1:-} == --list || $# -eq 0 ]]; then
  for room in "${!MUTATE[@]}"; do printf '%-14s mutate %s\n%-14s tests  %s\n' "$room" "${MUTATE[$room]}" '' "${FILTER[$room]}"; done
  exit 0
fi

together=0
if [[ ${1:-} == --together ]]; then together=1; shift; fi
rooms=()
while [[ $# -gt 0 && $1 != -- ]]; do
  [[ -n ${MUTATE[$1]:-} ]] || { echo "unknown room '$1' (bash scripts/mutation.sh --list)" >&2; exit 2; }
  rooms+=("$1"); shift
done
[[ ${1:-} == -- ]] && shift
extra=("$@")

dotnet tool restore >/dev/null
# Stryker builds and rewrites the test project's bin/ with mutated assemblies: work on a copy of
# the tree, so a test run or build in this checkout meanwhile never picks up a mutant.
copy=$(mktemp -d /tmp/rdr-mutation.XXXXXX)
trap 'rm -rf -- "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$copy"
# run_stryker NAME FILTER MUTATE-GLOBS(;-separated): one Stryker run into .artifacts/mutation/NAME.
run_stryker() {
  local name=$1 filter=$2 globs=$3 out=$PWD/.artifacts/mutation/$1 mutate=() glob
  rm -rf "$out"; mkdir -p "$out"
  if [[ ! " ${extra[*]} " == *" --mutate "* && ! " ${extra[*]} " == *" -m "* ]]; then
    IFS=';' read -r -a list <<<"$globs"
    for glob in "${list[@]}"; do mutate+=(--mutate "$glob"); done
  fi
  echo "== $name"
  # One test process at a time: tests that start PostgreSQL or Ceph must not race each other,
  # and the machine has two cores.
  (cd "$copy/tests/RegistryDR.Tests" && timeout 6h dotnet stryker \
      --project RegistryDR.csproj \
      --configuration Release \
      --concurrency 1 \
      --test-case-filter "$filter" \
      "${mutate[@]}" \
      --reporter html --reporter json --reporter progress --reporter cleartext \
      --output "$out" \
      --skip-version-check \
      "${extra[@]}") 2>&1 | tee "$out/stryker.log"
}

# room_score ROOM REPORT: the room's score from a Stryker json report, counted over the files its
# globs select (Stryker's definition: (killed + timeout) / (killed + timeout + survived + no coverage);
# ignored and compile-error mutants are not counted).
room_score() {
  python3 - "$2" "${MUTATE[$1]}" "$1" <<'PY'
import json, re, sys
report, globs, room = sys.argv[1], sys.argv[2].split(';'), sys.argv[3]
def rx(glob):
    # The rooms' globs all start with **/ (any directory): match the rest at a path boundary,
    # * within one path segment, as Stryker does.
    assert glob.startswith('**/'), glob
    return re.compile('(?:^|/)' + '[^/]*'.join(re.escape(part) for part in glob[3:].split('*')) + '$')
pats = [rx(g) for g in globs]
counts = {}
for path, f in json.load(open(report))['files'].items():
    if not any(p.search(path.replace('\\', '/')) for p in pats): continue
    for m in f['mutants']: counts[m['status']] = counts.get(m['status'], 0) + 1
det = counts.get('Killed', 0) + counts.get('Timeout', 0)
und = counts.get('Survived', 0) + counts.get('NoCoverage', 0)
detail = ', '.join(f'{k} {v}' for k, v in sorted(counts.items()))
print(f"{room}: {100 * det / (det + und):.2f} % ({detail})" if det + und else f"{room}: no score ({detail or 'no mutants'})")
PY
}

if [[ $together == 1 ]]; then
  name=$(IFS=+; echo "${rooms[*]}")
  filter='' globs=''
  for room in "${rooms[@]}"; do
    filter+="${filter:+|}(${FILTER[$room]})"
    globs+="${globs:+;}${MUTATE[$room]}"
  done
  run_stryker "$name" "$filter" "$globs"
  report=$(find "$PWD/.artifacts/mutation/$name" -name 'mutation-report.json' | head -n 1)
  for room in "${rooms[@]}"; do
    if [[ -n $report ]]; then room_score "$room" "$report"; else echo "$room: no report (see .artifacts/mutation/$name/stryker.log)"; fi
  done
  exit 0
fi

for room in "${rooms[@]}"; do
  run_stryker "$room" "${FILTER[$room]}" "${MUTATE[$room]}"
  out=$PWD/.artifacts/mutation/$room
  score=$(grep -aoE 'The final mutation score is [0-9.]+ ?%' "$out/stryker.log" | tail -n 1 || true)
  echo "$room: ${score:-no score (see $out/stryker.log)}"
done
