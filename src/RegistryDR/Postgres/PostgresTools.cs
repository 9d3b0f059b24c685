using System.Text.RegularExpressions;
using RegistryDR.Configuration;
using RegistryDR.Processes;

namespace RegistryDR.Postgres;

/// <summary>Finds PostgreSQL's client programs and reads their versions.</summary>
public sealed partial class PostgresTools
{
    private readonly string? _binDirectory;
    private readonly bool _explicit;

    public PostgresTools(DatabaseOptions options)
    {
        _explicit = !string.IsNullOrEmpty(options.BinDirectory);
        _binDirectory = _explicit ? options.BinDirectory : DetectBinDirectory();
    }

    public string PgDump => Resolve("pg_dump");
    public string PgDumpAll => Resolve("pg_dumpall");
    public string PgRestore => Resolve("pg_restore");
    public string Psql => Resolve("psql");

    private string Resolve(string tool)
    {
        if (_binDirectory is not null)
        {
            var candidate = Path.Combine(_binDirectory, tool);
            // A configured directory is the operator's choice: never silently use another version from PATH.
            if (File.Exists(candidate) || _explicit) return candidate;
        }
        return tool; // PATH; a missing tool is reported by ProcessRunner with what to check.
    }

    private static string? DetectBinDirectory()
    {
        // Debian installs versioned tools under /usr/lib/postgresql/N/bin and puts wrappers on PATH;
        // the newest installed version is what pg_config names.
        foreach (var pgConfig in new[] { "/usr/bin/pg_config", "/usr/local/bin/pg_config" })
        {
            if (!File.Exists(pgConfig)) continue;
            try
            {
                var psi = new System.Diagnostics.ProcessStartInfo(pgConfig, "--bindir") { RedirectStandardOutput = true, RedirectStandardError = true };
                using var p = System.Diagnostics.Process.Start(psi)!;
                var dir = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                if (p.ExitCode == 0 && Directory.Exists(dir)) return dir;
            }
            catch (System.ComponentModel.Win32Exception) { }
        }
        var lib = "/usr/lib/postgresql";
        if (Directory.Exists(lib))
        {
            var newest = Directory.GetDirectories(lib)
                .Select(d => (dir: d, ok: int.TryParse(Path.GetFileName(d), out var v), v))
                .Where(x => x.ok && File.Exists(Path.Combine(x.dir, "bin", "pg_dump")))
                .OrderByDescending(x => x.v).FirstOrDefault();
            if (newest.dir is not null) return Path.Combine(newest.dir, "bin");
        }
        return null;
    }

    /// <summary>"15.18" from "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".</summary>
    public static async Task<string> GetVersionAsync(string tool, CancellationToken cancellationToken)
    {
        var text = await ProcessRunner.CaptureAsync(new ProcessSpec(tool, ["--version"]) { Timeout = TimeSpan.FromSeconds(30) }, cancellationToken);
        var match = VersionPattern().Match(text);
        return match.Success ? match.Groups[1].Value : text.Trim();
    }

    public static int MajorVersion(string version)
    {
        var digits = new string(version.TakeWhile(char.IsAsciiDigit).ToArray());
        return int.TryParse(digits, out var major) ? major : 0;
    }

    [GeneratedRegex(@"\(PostgreSQL\)\s+([0-9][0-9.a-z]*)")]
    private static partial Regex VersionPattern();
}
