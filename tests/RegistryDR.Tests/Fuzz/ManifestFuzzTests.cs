using System.Text;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;
using RegistryDR.Backup;
using RegistryDR.Stores;

namespace RegistryDR.Tests.Fuzz;

/// <summary>
/// Seeded fuzzing of <see cref="BackupManifest.Parse"/>: a valid manifest is mutated (see
/// <see cref="ManifestMutator"/>) and each result must either parse into a manifest a restore can
/// rely on, or be refused with <see cref="InvalidManifestException"/> naming the backup and the
/// problem. Any other exception type is a bug.
/// </summary>
[TestClass]
public sealed class ManifestFuzzTests
{
    internal const string BackupId = "20240506T070809Z-a1b2c3";

    private const int Seed = 0x5eed_0010;

    internal static readonly string ValidManifest = $$"""
        {
          "formatVersion": 4,
          "backupId": "{{BackupId}}",
          "startedAt": "2024-05-06T07:08:09+00:00",
          "completedAt": "2024-05-06T07:09:10+00:00",
          "host": "registry-1",
          "registryDrVersion": "0.1.0",
          "postgres": {
            "serverVersion": "15.8",
            "pgDumpVersion": "15.8",
            "database": "registry",
            "owner": "registry",
            "encoding": "UTF8",
            "collate": "C.UTF-8",
            "ctype": "C.UTF-8",
            "dumpFormat": "custom",
            "properties": {
              "connectionLimit": 50,
              "isTemplate": false,
              "comment": "registry metadata",
              "tablespace": null,
              "localeProvider": "libc",
              "providerLocale": null,
              "icuRules": null,
              "acl": [
                { "grantee": "registry", "grantor": "registry", "privileges": ["CONNECT", "CREATE", "TEMPORARY"], "grantable": [] },
                { "grantee": "ops team", "grantor": "registry", "privileges": ["CONNECT"], "grantable": ["CONNECT"] }
              ],
              "settings": [
                { "role": null, "settings": ["search_path=registry, public, \"$user\"", "statement_timeout=30s"] },
                { "role": "registry", "settings": ["work_mem=16MB"] }
              ],
              "securityLabels": []
            }
          },
          "configDirectories": [
            { "path": "/var/local/dtr", "entryPrefix": "var/local/dtr" },
            { "path": "/usr/local/etc/dtr", "entryPrefix": "usr/local/etc/dtr" }
          ],
          "artifacts": [
            { "name": "database", "key": "backups/{{BackupId}}/database.dump", "size": 123456, "sha256": "{{new string('a', 64)}}" },
            { "name": "globals", "key": "backups/{{BackupId}}/globals.sql", "size": 789, "sha256": "{{new string('b', 64)}}" },
            { "name": "config", "key": "backups/{{BackupId}}/config.tar.gz", "size": 4242, "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
              "notKept": [{ "kind": "socket", "count": 7, "examples": ["/var/local/dtr/run/a.sock", "/var/local/dtr/run/caf\\xe9.sock"] }, { "kind": "FIFO", "count": 1, "examples": ["/var/local/dtr/run/events"] }] },
            { "name": "data-0000-00000", "key": "backups/{{BackupId}}/data/0000-00000.copy.zst", "size": 1000, "sha256": "{{new string('c', 64)}}", "compression": "zstd" },
            { "name": "data-0000-00001", "key": "backups/{{BackupId}}/data/0000-00001.copy.gz", "size": 2000, "sha256": "{{new string('d', 64)}}" }
          ],
          "splitTables": [
            { "schema": "public", "name": "events", "columns": ["id", "occurred_at", "request"], "ranges": ["data-0000-00000", "data-0000-00001"] }
          ],
          "fingerprint": { "rowCounts": { "public.repositories": 3, "public.manifests": 10 } },
          "warnings": [],
          "totalSize": 128487
        }
        """;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void TheTemplateIsValid()
    {
        var manifest = BackupManifest.Parse(Encoding.UTF8.GetBytes(ValidManifest), BackupId);
        AssertInvariants(manifest, "(the template)");
        Assert.AreEqual(5, manifest.Artifacts.Count);
        CollectionAssert.AreEqual(
            new[] { "socket (7): '/var/local/dtr/run/a.sock', '/var/local/dtr/run/caf\\xe9.sock', …", "FIFO (1): '/var/local/dtr/run/events'" },
            manifest.DescribeNotKept().ToList());
    }

    [TestMethod]
    public void AManifestWithoutNotKeptIsStillRead()
    {
        // Sets written before registry-dr recorded what it could not keep.
        var older = System.Text.RegularExpressions.Regex.Replace(ValidManifest, ",\\s*\"notKept\": \\[.*?\\] \\}\\] \\}", " }", System.Text.RegularExpressions.RegexOptions.Singleline);
        Assert.DoesNotContain("notKept", older);
        var manifest = BackupManifest.Parse(Encoding.UTF8.GetBytes(older), BackupId);
        Assert.IsNull(manifest.Find(BackupLayout.ConfigArtifact)!.NotKept);
        Assert.IsEmpty(manifest.DescribeNotKept());
    }

    [TestMethod]
    public void MutatedManifestsParseIntoUsableManifestsOrAreRefused()
    {
        var baseSeed = Fuzz.BaseSeed(Seed);
        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        var started = DateTime.UtcNow;
        var cpu = Environment.CpuUsage.TotalTime;
        var ran = 0;
        var failures = new Fuzz.Failures();
        foreach (var caseNumber in Fuzz.Cases(4000))
        {
            var random = new Random(Fuzz.CaseSeed(baseSeed, caseNumber));
            var mutator = new ManifestMutator(random, BackupId);
            var json = mutator.Mutate(ValidManifest);
            var where = $"{Fuzz.Where(baseSeed, caseNumber)}; mutations: {string.Join("; ", mutator.Log)}";
            try
            {
                var outcome = Check(json, where);
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            }
            catch (AssertFailedException ex)
            {
                failures.Add(new AssertFailedException($"{ex.Message}\nThe manifest is kept at {Fuzz.Keep("manifest", baseSeed, caseNumber, json)}.", ex));
            }

            ran++;
        }

        var summary = string.Join(", ", outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key} {o.Value}"));
        TestContext.WriteLine($"{ran} manifests from seed {baseSeed} in {(DateTime.UtcNow - started).TotalSeconds:F1}s ({(Environment.CpuUsage.TotalTime - cpu).TotalSeconds:F1}s CPU): {summary}");
        failures.AssertNone();
        if (Fuzz.OnlyCase is null)
        {
            Assert.IsGreaterThanOrEqualTo(ran / 50, outcomes.GetValueOrDefault("accepted"), $"Too few accepted manifests: {summary}");
            Assert.IsGreaterThanOrEqualTo(ran / 2, outcomes.GetValueOrDefault("refused"), $"Too few refused manifests: {summary}");
        }
    }

    /// <summary>Parses once; returns "accepted" or "refused", failing on anything else.</summary>
    internal static string Check(byte[] json, string where)
    {
        BackupManifest manifest;
        try
        {
            manifest = BackupManifest.Parse(json, BackupId);
        }
        catch (InvalidManifestException ex)
        {
            const string Expected = $"The manifest of backup {BackupId} is refused: ";
            Assert.StartsWith(Expected, ex.Message, where);
            Assert.IsGreaterThan(Expected.Length + 3, ex.Message.Length, $"The refusal does not say what is wrong {where}");
            return "refused";
        }
        catch (Exception ex)
        {
            Assert.Fail($"Parse threw {ex.GetType().FullName} instead of InvalidManifestException {where}: {ex}");
            throw;
        }

        AssertInvariants(manifest, where);
        return "accepted";
    }

    /// <summary>Everything a restore takes for granted once Parse has returned.</summary>
    internal static void AssertInvariants(BackupManifest manifest, string where)
    {
        Assert.IsTrue(manifest.FormatVersion is >= BackupManifest.OldestReadableFormatVersion and <= BackupManifest.CurrentFormatVersion, where);
        Assert.IsNotNull(manifest.SplitTables, where);
        foreach (var table in manifest.SplitTables)
        {
            Assert.IsNotNull(table, where);
            Assert.IsFalse(string.IsNullOrEmpty(table.Schema) || string.IsNullOrEmpty(table.Name), where);
            Assert.IsTrue(table.Columns.Count > 0 && table.Columns.All(c => !string.IsNullOrEmpty(c) && !c.Contains('\0')), where);
            foreach (var range in table.Ranges)
                Assert.IsTrue(BackupLayout.IsTableDataArtifact(manifest.Find(range)?.Name ?? ""), where);
        }
        Assert.AreEqual(BackupId, manifest.BackupId, where);
        Assert.IsNotNull(manifest.Host, where);
        Assert.IsNotNull(manifest.RegistryDrVersion, where);
        Assert.IsNotNull(manifest.Postgres, where);
        Assert.IsNotNull(manifest.Postgres.Database, where);
        Assert.IsNotNull(manifest.Postgres.Owner, where);
        if (manifest.Postgres.Properties is { } properties)
        {
            // What restore and drill do with them must not throw.
            Assert.IsNotNull(properties.ApplyStatements("registry", "registry"), where);
            Assert.IsNotNull(properties.Describe(), where);
            Assert.IsNotNull(properties.CreateClauses(tablespace: true), where);
            Assert.IsNotNull(properties.WithoutMissingRoles(_ => false).LeftOut, where);
        }

        var prefix = BackupLayout.SetPrefix(BackupId);
        Assert.IsNotNull(manifest.Artifacts, where);
        foreach (var artifact in manifest.Artifacts)
        {
            Assert.IsNotNull(artifact, $"A null artifact was accepted {where}");
            Assert.IsNotNull(artifact.Name, where);
            Assert.IsNotNull(artifact.Key, where);
            // Restore, drill and verify decompress a range with the codec it names (gzip when it names none).
            Assert.IsTrue(artifact.Compression is null || (BackupLayout.IsTableDataArtifact(artifact.Name) && ArtifactCompression.IsKnown(artifact.Compression)), where);
            Assert.StartsWith(prefix, artifact.Key, where);
            Assert.IsGreaterThan(prefix.Length, artifact.Key.Length, where);
            try
            {
                // What every store does with the key before it touches anything.
                StoreKeys.Validate(artifact.Key);
            }
            catch (ArgumentException ex)
            {
                Assert.Fail($"Artifact key '{Fuzz.Printable(artifact.Key)}' was accepted but every store refuses it ({ex.Message}) {where}");
            }

            Assert.IsGreaterThanOrEqualTo(0L, artifact.Size, where);
            Assert.IsNotNull(artifact.Sha256, where);
            Assert.IsTrue(artifact.Sha256.Length == 64 && artifact.Sha256.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f'), $"Hash '{Fuzz.Printable(artifact.Sha256)}' accepted {where}");
        }

        foreach (var required in new[] { BackupLayout.DatabaseArtifact, BackupLayout.GlobalsArtifact, BackupLayout.ConfigArtifact })
        {
            Assert.AreEqual(1, manifest.Artifacts.Count(a => a.Name == required), $"'{required}' artifacts {where}");
        }

        try
        {
            // The plan and the progress report add the sizes up.
            _ = manifest.TotalSize;
        }
        catch (OverflowException)
        {
            Assert.Fail($"The artifact sizes add up to more than a long {where}");
        }

        // verify and restore --dry-run print these lines: they must exist and be printable.
        foreach (var line in manifest.DescribeNotKept())
        {
            Assert.IsFalse(line.Any(char.IsControl), $"A not-kept line carries control characters {where}: {Fuzz.Printable(line)}");
        }

        Assert.IsTrue(manifest.Artifacts.All(a => a.NotKept is null || a.Name == BackupLayout.ConfigArtifact), $"notKept accepted on another artifact {where}");
        Assert.IsNotNull(manifest.ConfigDirectories, where);
        foreach (var directory in manifest.ConfigDirectories)
        {
            Assert.IsNotNull(directory, $"A null config directory was accepted {where}");
            Assert.IsNotNull(directory.Path, where);
            Assert.StartsWith("/", directory.Path, where);
        }

        try
        {
            // Restore and verification turn the directories into archive roots exactly like this.
            EntryNames.ValidateRoots(manifest.ConfigDirectories.Select(d => new ArchiveRoot(d.Path, d.EntryPrefix)).ToList());
        }
        catch (ArgumentException ex)
        {
            Assert.Fail($"Config directories [{string.Join(", ", manifest.ConfigDirectories.Select(d => $"'{Fuzz.Printable(d.Path)}'/'{Fuzz.Printable(d.EntryPrefix)}'"))}] were accepted but restore cannot use them: {ex.Message} {where}");
        }
    }
}
