using System.Diagnostics;
using System.Text;

namespace RegistryDR.Tests.Deployment;

/// <summary>What a script printed (stdout and stderr interleaved, as a person would see it) and how it ended.</summary>
internal sealed record ScriptRun(int ExitCode, string Output)
{
    public override string ToString() => $"exit {ExitCode}:{Environment.NewLine}{Output}";
}

/// <summary>The repository (templates, boot scripts) and a way to run its scripts as child processes.</summary>
internal static class DeploymentTestSupport
{
    /// <summary>The directory containing RegistryDR.sln, found by walking up from the test binaries.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string BootstrapDirectory => Path.Combine(RepoRoot, "bootstrap");

    public static string CloudFormationDirectory => Path.Combine(RepoRoot, "cloudformation");

    private static string FindRepoRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "RegistryDR.sln"))) return directory.FullName;
        }
        throw new InvalidOperationException($"No directory containing RegistryDR.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>
    /// Runs a program in the repository root with a clean RegistryDR and AWS environment (no
    /// inherited REGISTRYDR_*, RDR_*, AWS_* or DOTNET_ROOT variables: nothing from the machine may
    /// re-key or redirect an AWS CLI, or point at a .NET install) plus <paramref name="environment"/>;
    /// kills it and its children when <paramref name="timeout"/> or the test's token runs out.
    /// </summary>
    public static async Task<ScriptRun> RunAsync(string fileName, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = RepoRoot,
        };
        foreach (var argument in arguments) psi.ArgumentList.Add(argument);
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("REGISTRYDR", StringComparison.Ordinal) || k.StartsWith("RDR_", StringComparison.Ordinal) ||
                                                             k.StartsWith("AWS_", StringComparison.Ordinal) || k == "DOTNET_ROOT").ToList())
            psi.Environment.Remove(key);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) psi.Environment[key] = value;

        var output = new StringBuilder();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            string partial;
            lock (output) partial = output.ToString();
            throw new TimeoutException($"{fileName} {string.Join(' ', psi.ArgumentList)} did not finish within {timeout}; output so far:{Environment.NewLine}{partial}");
        }
        lock (output) return new ScriptRun(process.ExitCode, output.ToString());
    }

    /// <summary>
    /// What the template's user data stub hands to bootstrap/user-data.sh, for a dry run under
    /// <paramref name="root"/> (no packages, no systemd).
    /// </summary>
    public static Dictionary<string, string> UserDataValues(string root) => new()
    {
        ["RDR_ROOT"] = root,
        ["RDR_SKIP_PACKAGES"] = "1",
        ["RDR_NO_SYSTEMD"] = "1",
        ["RDR_STACK_NAME"] = "registry-prod",
        ["RDR_REGION"] = "eu-west-1",
        ["RDR_GROUP_NAME"] = "registry-prod-registry",
        ["RDR_ARTIFACT_URL"] = "s3://releases/registry-dr/registry-dr.tar.gz",
        ["RDR_ARTIFACT_SHA256"] = new string('a', 64),
        ["RDR_STORE_URL"] = "s3://registry-prod-backupbucket-1x2y3z/registry-dr",
        ["RDR_SSE"] = "S3",
        ["RDR_ALLOW_FIRST_BOOT"] = "false",
        ["RDR_CRON"] = "0 0/15 * * * ?",
        ["RDR_DB_HOST"] = "127.0.0.1",
        ["RDR_DB_PORT"] = "5432",
        ["RDR_DB_NAME"] = "dtr",
        ["RDR_DB_USER"] = "postgres",
        ["RDR_REGISTRY_SERVICE"] = "dtr",
        ["RDR_HEALTH_URL"] = "https://127.0.0.1/load_balancer_status",
        ["RDR_NODE_SETUP"] = "image",
    };

    public static Task<ScriptRun> RunUserDataAsync(Dictionary<string, string> environment, CancellationToken cancellationToken) =>
        RunAsync("bash", [Path.Combine(BootstrapDirectory, "user-data.sh")], environment, TimeSpan.FromMinutes(2), cancellationToken);

    /// <summary>Writes an executable script (mode 0755).</summary>
    public static void WriteExecutable(string path, string text)
    {
        File.WriteAllText(path, text.ReplaceLineEndings("\n"));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                                   UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
    }

    /// <summary>Whether a command is on PATH.</summary>
    public static bool IsOnPath(string command) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(directory => File.Exists(Path.Combine(directory, command)));
}
