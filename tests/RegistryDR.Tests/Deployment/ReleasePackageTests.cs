using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// bootstrap/package-release.sh for real: the tarball the template deploys holds exactly the
/// self-contained registry-dr, the node scripts and the registry, its printed SHA-256 is the
/// file's, and the packaged registry-dr starts on a machine without any .NET install (a mount
/// namespace in which every .NET location is an empty tmpfs, no DOTNET_ROOT, no dotnet on PATH),
/// where the framework-dependent build of the same code does not.
/// </summary>
[TestClass]
public sealed class ReleasePackageTests
{
    // One self-contained publish: a minute or two, more on a busy machine.
    private static readonly TimeSpan PackageTimeout = TimeSpan.FromMinutes(15);

    /// <summary>Where a .NET runtime could be found on this machine (or on an image): all hidden in the sandbox.</summary>
    private static readonly string[] DotnetLocations = ["/usr/share/dotnet", "/usr/lib/dotnet", "/usr/local/share/dotnet", "/opt/dotnet", "/root/.dotnet", "/etc/dotnet"];

    public TestContext TestContext { get; set; } = null!;

    /// <summary>Runs <paramref name="program"/> with <paramref name="arguments"/> in a mount namespace without .NET.</summary>
    private Task<ScriptRun> RunWithoutDotnetAsync(string program, params string[] arguments)
    {
        var hide = string.Join("\n", DotnetLocations.Select(d => $"if [ -d '{d}' ]; then mount -t tmpfs -o size=1m,mode=0755 none '{d}'; fi"));
        var script = $"""
            set -eu
            {hide}
            # Nothing .NET is left to find: no dotnet that runs, no runtime directory with content.
            if env -i PATH=/usr/bin:/bin dotnet --info >/dev/null 2>&1; then echo "SANDBOX BROKEN: dotnet runs"; exit 99; fi
            for d in {string.Join(' ', DotnetLocations)}; do
              if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then echo "SANDBOX BROKEN: $d is not empty"; exit 99; fi
            done
            exec env -i PATH=/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8 "$@"
            """;
        return DeploymentTestSupport.RunAsync("unshare", ["--mount", "--propagation", "private", "bash", "-c", script, "sandbox", program, .. arguments],
            null, TimeSpan.FromMinutes(2), TestContext.CancellationToken);
    }

    [TestMethod]
    [Timeout(1_200_000, CooperativeCancellation = true)]
    public async Task TheReleaseIsSelfContainedAndStartsWithoutAnyDotnetInstall()
    {
        Assert.IsTrue(File.Exists("/usr/bin/docker-registry"), "Debian's docker-registry is not installed: run scripts/install-prerequisites.sh");
        using var work = new TempDirectory("rdr-release-");
        var tarball = Path.Combine(work.Path, "out", "registry-dr.tar.gz");

        var package = await DeploymentTestSupport.RunAsync("bash", [Path.Combine(DeploymentTestSupport.BootstrapDirectory, "package-release.sh"), tarball],
            null, PackageTimeout, TestContext.CancellationToken);

        Assert.AreEqual(0, package.ExitCode, package.ToString());
        var sha = Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(tarball, TestContext.CancellationToken)));
        StringAssert.Contains(package.Output, $"sha256:  {sha}\n");
        StringAssert.Contains(package.Output, $"ArtifactKey=registry-dr/registry-dr-{sha}.tar.gz ArtifactSha256={sha}");

        // Exactly these entries, owned by root, with these modes.
        var entries = new Dictionary<string, (UnixFileMode Mode, int Uid)>();
        await using (var file = File.OpenRead(tarball))
        await using (var gzip = new GZipStream(file, CompressionMode.Decompress))
        using (var reader = new TarReader(gzip))
        {
            while (await reader.GetNextEntryAsync(cancellationToken: TestContext.CancellationToken) is { } entry)
                if (entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile) entries[entry.Name.TrimStart('.', '/')] = (entry.Mode, entry.Uid);
        }
        const UnixFileMode exe = (UnixFileMode)0b111_101_101, data = (UnixFileMode)0b110_100_100;
        CollectionAssert.AreEquivalent(new Dictionary<string, (UnixFileMode, int)>
        {
            ["registry-dr"] = (exe, 0), ["registry-dr.pdb"] = (data, 0), ["RegistryDR.pdb"] = (data, 0), ["RELEASE"] = (data, 0),
            ["bootstrap/registry-dr-boot.sh"] = (exe, 0), ["bootstrap/user-data.sh"] = (exe, 0), ["bootstrap/reference-node.sh"] = (exe, 0),
            ["bootstrap/registry-dr-bootstrap.service"] = (data, 0), ["bootstrap/registry-dr-worker.service"] = (data, 0), ["bootstrap/README.md"] = (data, 0),
            ["registry/docker-registry"] = (exe, 0), ["registry/copyright"] = (data, 0),
        }, entries, string.Join(", ", entries.Select(e => $"{e.Key} {Convert.ToString((int)e.Value.Mode, 8)} uid {e.Value.Uid}")));

        var extracted = Directory.CreateDirectory(Path.Combine(work.Path, "extracted")).FullName;
        await TarFile.ExtractToDirectoryAsync(new GZipStream(File.OpenRead(tarball), CompressionMode.Decompress), extracted, overwriteFiles: false, TestContext.CancellationToken);
        var program = Path.Combine(extracted, "registry-dr");

        var version = await RunWithoutDotnetAsync(program, "--version");
        var help = await RunWithoutDotnetAsync(program, "--help");

        Assert.AreEqual(0, version.ExitCode, version.ToString());
        StringAssert.StartsWith(version.Output, "0.1.0+");
        Assert.AreEqual($"registry-dr {version.Output.Trim()}\nruntime-identifier linux-x64\nself-contained true\nregistry github.com/docker/distribution 2.8.2+ds1\n",
            await File.ReadAllTextAsync(Path.Combine(extracted, "RELEASE"), TestContext.CancellationToken));
        Assert.AreEqual(0, help.ExitCode, help.ToString());
        foreach (var command in new[] { "backup", "restore", "bootstrap", "worker", "status" }) StringAssert.Contains(help.Output, $"  {command} ");

        // The same sandbox stops the framework-dependent build: it is the .NET install that is gone.
        var frameworkDependent = Path.Combine(AppContext.BaseDirectory, "registry-dr");
        Assert.IsTrue(File.Exists(frameworkDependent), $"{frameworkDependent}: the CLI's framework-dependent apphost next to the tests");
        var control = await RunWithoutDotnetAsync(frameworkDependent, "--version");
        Assert.AreNotEqual(0, control.ExitCode, control.ToString());
        StringAssert.Contains(control.Output, "You must install .NET to run this application.");
        Assert.DoesNotContain("SANDBOX BROKEN", control.Output + version.Output + help.Output);
    }
}
