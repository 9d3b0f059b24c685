using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Retention;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Runs bash scripts for the config-fidelity tests. Fixtures are built, and restored trees read,
/// with stock tools (coreutils, setfacl/getfacl, setfattr/getfattr, find), never with RegistryDR's
/// own file code, so a mistake shared by our writer and reader cannot hide itself. Scripts are
/// ASCII; names that are not UTF-8 are spelled with bash's $'\xe9' quoting.
/// </summary>
internal static class Shell
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);

    /// <summary>Runs the script with <c>set -euo pipefail</c>; returns stdout as bytes, fails the test on a non-zero exit.</summary>
    public static byte[] Run(string script)
    {
        var start = new ProcessStartInfo("/bin/bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        // The C locale: names are bytes to grep, sort and sed, never "binary" text they skip.
        start.ArgumentList.Add("set -euo pipefail\nexport LC_ALL=C\n" + script);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("bash did not start");
        var output = new MemoryStream();
        var copy = process.StandardOutput.BaseStream.CopyToAsync(output);
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"This script did not finish within {Limit}:\n{script}");
        }

        copy.Wait(Limit);
        error.Wait(Limit);
        if (process.ExitCode != 0)
        {
            Assert.Fail($"This script exited {process.ExitCode}: {error.Result}\n{script}");
        }

        return output.ToArray();
    }

    /// <summary>Stdout as text (the tools' output is ASCII here: hex values, numeric ids).</summary>
    public static string Text(string script) => Encoding.UTF8.GetString(Run(script));

    /// <summary>Single-quotes a path for bash (paths here come from the temp directory and are ASCII).</summary>
    public static string Quote(string path) => "'" + path.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>
    /// Every path below <paramref name="directory"/> (relative, as raw bytes), as find(1) lists it:
    /// the bytes the kernel holds, not a decoded string.
    /// </summary>
    public static List<byte[]> RawNames(string directory)
    {
        var output = Run($"cd {Quote(directory)} && find . -mindepth 1 -printf '%P\\0' | LC_ALL=C sort -z");
        var names = new List<byte[]>();
        var start = 0;
        for (var i = 0; i < output.Length; i++)
        {
            if (output[i] == 0)
            {
                names.Add(output[start..i]);
                start = i + 1;
            }
        }

        return names;
    }

    /// <summary>Renders bytes as a bash $'...' word, so a test can name a raw path in a script.</summary>
    public static string AnsiC(byte[] bytes)
    {
        var builder = new StringBuilder("$'");
        foreach (var b in bytes)
        {
            builder.Append(b is >= 0x20 and < 0x7f and not (byte)'\'' and not (byte)'\\' ? ((char)b).ToString() : $"\\x{b:x2}");
        }

        return builder.Append('\'').ToString();
    }

    /// <summary>
    /// Fails (never skips) when the directory's filesystem cannot hold what the fidelity tests
    /// check, or the tools are missing: a test that silently does nothing would pass on any code.
    /// </summary>
    public static void RequireXattrsAndAcls(string directory)
    {
        foreach (var tool in new[] { "setfacl", "getfacl", "setfattr", "getfattr" })
        {
            if (!File.Exists("/usr/bin/" + tool))
            {
                Assert.Fail($"/usr/bin/{tool} is missing: install Debian's 'acl' and 'attr' packages (scripts/install-prerequisites.sh does).");
            }
        }

        var probe = Path.Combine(directory, ".fidelity-probe");
        File.WriteAllText(probe, "probe");
        try
        {
            var start = new ProcessStartInfo("/bin/bash") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add($"setfattr -n user.probe -v 1 {Quote(probe)} && setfacl -m u:4242:r {Quote(probe)} && setfacl -d -m u:4242:r {Quote(directory)} && setfacl -k {Quote(directory)}");
            using var process = Process.Start(start)!;
            var error = process.StandardError.ReadToEnd();
            process.WaitForExit(Limit);
            if (process.ExitCode != 0)
            {
                var fs = Encoding.UTF8.GetString(Run($"stat -f -c %T {Quote(directory)}")).Trim();
                Assert.Fail($"The filesystem of {directory} ({fs}) does not take user.* extended attributes or POSIX ACLs ({error.Trim()}); these tests need one that does (ext4, xfs, tmpfs), so they cannot run here.");
            }
        }
        finally
        {
            File.Delete(probe);
        }
    }
}

/// <summary>
/// One node for a config-fidelity test: a small seeded database, the two DTR-like config
/// directories of <see cref="TestNode"/> (to which a test adds its kind), a file store, and a
/// real <see cref="BackupService"/> → wipe → <see cref="RestoreService"/> round trip.
/// </summary>
internal sealed class ConfigRoundTrip : IAsyncDisposable
{
    private readonly TempDirectory _store;

    private ConfigRoundTrip(TestNode node, TempDirectory store)
    {
        Node = node;
        _store = store;
    }

    public TestNode Node { get; }

    /// <summary>The first config directory (…/var/local/dtr).</summary>
    public string Data => Node.ConfigDirectories[0];

    /// <summary>The second config directory (…/usr/local/etc/dtr).</summary>
    public string Etc => Node.ConfigDirectories[1];

    /// <summary>What the backup logged, formatted.</summary>
    public ListLogger<BackupService> BackupLog { get; } = new();

    /// <summary>What the restore logged, formatted.</summary>
    public ListLogger<RestoreService> RestoreLog { get; } = new();

    public static async Task<ConfigRoundTrip> CreateAsync()
    {
        var store = new TempDirectory("rdr-fidelity-store-");
        var node = await TestNode.CreateAsync("file://" + store.Path, repositories: 5);
        Shell.RequireXattrsAndAcls(node.ConfigDirectories[0]);

        // TestNode's tree has a file its exclude glob keeps out of every backup; these tests
        // compare whole trees, so it goes.
        File.Delete(Path.Combine(node.ConfigDirectories[0], "registry.sock"));
        return new ConfigRoundTrip(node, store);
    }

    /// <summary>Backs up, removes both config directories and the database, restores the newest set.</summary>
    public async Task<BackupManifest> BackupWipeRestoreAsync()
    {
        var manifest = await BackupAsync();
        await Node.Cluster.DropDatabaseAsync(Node.Database);

        // rm, not Directory.Delete: .NET cannot remove names that are not UTF-8.
        Shell.Run($"rm -rf {Shell.Quote(Data)} {Shell.Quote(Etc)}");
        await RestoreAsync();
        return manifest;
    }

    public Task<BackupManifest> BackupAsync() =>
        new BackupService(Node.Options, Node.CreateStore(), BackupLog, TimeProvider.System).RunAsync();

    public Task<RestoreResult> RestoreAsync() =>
        new RestoreService(Node.Options, Node.CreateStore(), RestoreLog, TimeProvider.System).RestoreAsync(new RestoreRequest("latest", TerminateSessions: true)); // no registry runs here: as an operator who stopped it

    /// <summary>The backup's warnings, one formatted line each.</summary>
    public List<string> BackupWarnings() => BackupLog.Entries.Where(e => e.Level == LogLevel.Warning).Select(e => e.Message).ToList();

    public async ValueTask DisposeAsync()
    {
        try
        {
            Shell.Run($"rm -rf {Shell.Quote(Node.Root)}");
        }
        catch (AssertFailedException)
        {
            // Best effort; the node's own dispose tries again.
        }

        await Node.DisposeAsync();
        _store.Dispose();
    }
}
