using System.Diagnostics;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// A real, throw-away S3 server for tests: Ceph's RADOS Gateway on a one-host Ceph cluster
/// bound to 127.0.0.1, started and stopped by <c>tests/tools/s3-server.sh</c> in a fresh
/// temporary directory. Each instance has its own ports and its own (in-memory) data, so
/// several can run at once. Needs the Debian packages ceph-mon, ceph-osd, radosgw,
/// ceph-common and uuid-runtime (installed in CI by <c>.ci/run</c>).
/// </summary>
/// <example>
/// <code>
/// await using var s3 = await CephS3Server.StartAsync();
/// await s3.CreateBucketAsync("my-bucket");
/// using var client = s3.CreateClient();
/// </code>
/// </example>
internal sealed class CephS3Server : IAsyncDisposable
{
    /// <summary>Access key of the test user the script creates.</summary>
    public const string TestAccessKey = "registrydr-test-access";

    /// <summary>Secret key of the test user the script creates.</summary>
    public const string TestSecretKey = "registrydr-test-secret-0123456789abcdef";

    /// <summary>Region to sign with; radosgw's default zone group accepts us-east-1.</summary>
    public const string TestRegion = "us-east-1";

    /// <summary>
    /// The Debian awscli 2.x. The first <c>aws</c> on PATH may be an unrelated older 1.x.
    /// </summary>
    public const string AwsCliPath = "/usr/bin/aws";

    private const string ScriptRelativePath = "tests/tools/s3-server.sh";

    // The script itself gives up after 60 s per phase; these only guard against a hang.
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromMinutes(1);

    // Variables that would make the AWS CLI look for profiles, tokens or other endpoints.
    // An empty AWS_PROFILE is not the same as none: awscli fails with "The config profile ()
    // could not be found", so these are removed rather than blanked.
    private static readonly string[] AwsCliVariablesToRemove =
    [
        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
        "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ];

    private readonly string _scriptPath;
    private int _disposed;

    private CephS3Server(string scriptPath, string dataDirectory, string endpoint)
    {
        _scriptPath = scriptPath;
        DataDirectory = dataDirectory;
        Endpoint = endpoint;
        AwsCliEnvironment = new Dictionary<string, string>
        {
            ["AWS_ACCESS_KEY_ID"] = TestAccessKey,
            ["AWS_SECRET_ACCESS_KEY"] = TestSecretKey,
            ["AWS_DEFAULT_REGION"] = TestRegion,
            ["AWS_REGION"] = TestRegion,
            ["AWS_EC2_METADATA_DISABLED"] = "true",
            // Nothing from ~/.aws: an empty config and credentials file.
            ["AWS_CONFIG_FILE"] = "/dev/null",
            ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null",
            // awscli 2 pipes its output through "less" by default.
            ["AWS_PAGER"] = "",
        };
    }

    /// <summary>The S3 endpoint, e.g. <c>http://127.0.0.1:40123</c> (plain HTTP, path-style).</summary>
    public string Endpoint { get; }

    /// <summary>Access key of the test user.</summary>
    public string AccessKey => TestAccessKey;

    /// <summary>Secret key of the test user.</summary>
    public string SecretKey => TestSecretKey;

    /// <summary>The region to sign requests with: <c>us-east-1</c>.</summary>
    public string Region => TestRegion;

    /// <summary>The directory holding the server's configuration and logs (<c>log/*.log</c>).</summary>
    public string DataDirectory { get; }

    /// <summary>
    /// Environment variables for running <see cref="AwsCliPath"/> against this server as a child
    /// process. Also remove AWS_PROFILE and friends from the child's environment, or use
    /// <see cref="ConfigureAwsCli"/> / <see cref="CreateAwsCliStartInfo"/>, which do both; and
    /// pass <c>--endpoint-url</c> <see cref="Endpoint"/>.
    /// </summary>
    public IReadOnlyDictionary<string, string> AwsCliEnvironment { get; }

    /// <summary>
    /// Starts a new server in a new temporary directory. Takes a few seconds.
    /// </summary>
    /// <exception cref="InvalidOperationException">The script failed; the message has its output
    /// including the tail of the relevant logs.</exception>
    public static async Task<CephS3Server> StartAsync(CancellationToken cancellationToken = default)
    {
        var script = FindScript();
        var directory = Directory.CreateTempSubdirectory("registrydr-s3-").FullName;
        ScriptResult result;
        try
        {
            result = await RunScriptAsync(script, StartTimeout, cancellationToken, "start", directory)
                .ConfigureAwait(false);
        }
        catch
        {
            // Timed out or cancelled: the script was killed with its process tree; make sure
            // nothing it started is left running.
            await StopQuietlyAsync(script, directory).ConfigureAwait(false);
            throw;
        }

        if (result.ExitCode != 0)
        {
            // The script stops what it started when it fails, and prints the log tails.
            TryDeleteDirectory(directory);
            throw new InvalidOperationException(
                $"{ScriptRelativePath} start failed with exit code {result.ExitCode}.{Environment.NewLine}" +
                $"stderr:{Environment.NewLine}{result.StandardError}{Environment.NewLine}" +
                $"stdout:{Environment.NewLine}{result.StandardOutput}");
        }

        var endpointFile = Path.Combine(directory, "endpoint");
        var endpoint = File.Exists(endpointFile) ? (await File.ReadAllTextAsync(endpointFile, cancellationToken).ConfigureAwait(false)).Trim() : "";
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out _))
        {
            await StopQuietlyAsync(script, directory).ConfigureAwait(false);
            TryDeleteDirectory(directory);
            throw new InvalidOperationException(
                $"{ScriptRelativePath} start succeeded but wrote no valid endpoint ('{endpoint}').{Environment.NewLine}" +
                $"stdout:{Environment.NewLine}{result.StandardOutput}");
        }

        return new CephS3Server(script, directory, endpoint);
    }

    /// <summary>
    /// An S3 client for this server with the test keys. The caller disposes it.
    /// </summary>
    public IAmazonS3 CreateClient()
    {
        var config = new AmazonS3Config
        {
            ServiceURL = Endpoint,
            // radosgw is addressed by IP and port: no bucket.host names.
            ForcePathStyle = true,
            AuthenticationRegion = Region,
            // The SDK's default (WHEN_SUPPORTED) sends trailing checksums that Ceph 16 does not
            // understand: every write would fail with 400 XAmzContentSHA256Mismatch.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        return new AmazonS3Client(new BasicAWSCredentials(AccessKey, SecretKey), config);
    }

    /// <summary>Creates a bucket (names have 3 to 63 characters).</summary>
    public async Task CreateBucketAsync(string name, CancellationToken cancellationToken = default)
    {
        using var client = CreateClient();
        await client.PutBucketAsync(new PutBucketRequest { BucketName = name }, cancellationToken)
            .ConfigureAwait(false);
    }

    /// <summary>
    /// Applies <see cref="AwsCliEnvironment"/> to <paramref name="startInfo"/> and removes the
    /// variables that would point the AWS CLI at profiles, tokens or other endpoints.
    /// </summary>
    public void ConfigureAwsCli(ProcessStartInfo startInfo)
    {
        ArgumentNullException.ThrowIfNull(startInfo);
        foreach (var name in AwsCliVariablesToRemove)
        {
            startInfo.Environment.Remove(name);
        }

        foreach (var (name, value) in AwsCliEnvironment)
        {
            startInfo.Environment[name] = value;
        }
    }

    /// <summary>
    /// A start info for <c>/usr/bin/aws --endpoint-url ENDPOINT --region us-east-1 ARGS</c> with
    /// <see cref="ConfigureAwsCli"/> applied and standard output and error redirected (read both
    /// asynchronously).
    /// </summary>
    public ProcessStartInfo CreateAwsCliStartInfo(params string[] arguments)
    {
        var startInfo = new ProcessStartInfo(AwsCliPath)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        startInfo.ArgumentList.Add("--endpoint-url");
        startInfo.ArgumentList.Add(Endpoint);
        startInfo.ArgumentList.Add("--region");
        startInfo.ArgumentList.Add(Region);
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        ConfigureAwsCli(startInfo);
        return startInfo;
    }

    /// <summary>
    /// Kills the gateway (radosgw) with SIGKILL, as a crash would: its connections are reset and
    /// new ones refused. The monitor and OSD keep running; dispose still cleans everything up.
    /// Only for a server of the test's own (<see cref="StartAsync"/>), never the shared one.
    /// </summary>
    public void KillGateway()
    {
        foreach (var line in File.ReadAllLines(Path.Combine(DataDirectory, "daemons.pids")))
        {
            var parts = line.Split(' ', 2);
            if (parts.Length == 2 && parts[1].StartsWith("client.rgw", StringComparison.Ordinal) && int.TryParse(parts[0], out var pid))
            {
                using var gateway = Process.GetProcessById(pid);
                gateway.Kill();
                gateway.WaitForExit(10_000);
                return;
            }
        }
        throw new InvalidOperationException($"no radosgw pid in {DataDirectory}/daemons.pids");
    }

    /// <summary>
    /// Stops the server (SIGTERM, then SIGKILL after about 10 s) and deletes its directory.
    /// If stopping fails, the directory is kept for its logs and the error is thrown.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var result = await RunScriptAsync(_scriptPath, StopTimeout, CancellationToken.None, "stop", DataDirectory)
            .ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{ScriptRelativePath} stop {DataDirectory} failed with exit code {result.ExitCode}.{Environment.NewLine}" +
                $"stderr:{Environment.NewLine}{result.StandardError}");
        }

        TryDeleteDirectory(DataDirectory);
    }

    /// <summary>
    /// The script, found from the directory containing RegistryDR.sln above the test binaries.
    /// </summary>
    private static string FindScript()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "RegistryDR.sln")))
            {
                var script = Path.Combine(directory.FullName, ScriptRelativePath);
                return File.Exists(script)
                    ? script
                    : throw new FileNotFoundException($"{ScriptRelativePath} not found in {directory.FullName}", script);
            }
        }

        throw new DirectoryNotFoundException(
            $"No directory containing RegistryDR.sln above {AppContext.BaseDirectory}");
    }

    private static async Task StopQuietlyAsync(string script, string directory)
    {
        try
        {
            await RunScriptAsync(script, StopTimeout, CancellationToken.None, "stop", directory).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
            // Best effort: the original failure is the one to report.
        }
    }

    private static void TryDeleteDirectory(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover temporary directory is not worth failing a test for.
        }
    }

    /// <summary>
    /// Runs the script with bash (so it need not be executable in the checkout), reading
    /// standard output and error concurrently so neither pipe can fill up and block it.
    /// </summary>
    private static async Task<ScriptResult> RunScriptAsync(
        string script, TimeSpan timeout, CancellationToken cancellationToken, params string[] arguments)
    {
        var startInfo = new ProcessStartInfo("bash")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        startInfo.ArgumentList.Add(script);
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = new Process { StartInfo = startInfo };
        process.Start();
        process.StandardInput.Close();
        // The daemons the script starts do not inherit these pipes, so both reach EOF when
        // the script exits.
        var standardOutput = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var standardError = process.StandardError.ReadToEndAsync(CancellationToken.None);

        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                // By process tree, i.e. by pid: also the daemons the script started so far.
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already exited.
            }

            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            var partialError = await standardError.ConfigureAwait(false);
            throw new TimeoutException(
                $"{ScriptRelativePath} {string.Join(' ', arguments)} did not finish within {timeout}.{Environment.NewLine}" +
                $"stderr:{Environment.NewLine}{partialError}");
        }

        return new ScriptResult(
            process.ExitCode,
            await standardOutput.ConfigureAwait(false),
            await standardError.ConfigureAwait(false));
    }

    private sealed record ScriptResult(int ExitCode, string StandardOutput, string StandardError);
}
