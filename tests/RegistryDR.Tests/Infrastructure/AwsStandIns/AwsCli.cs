using System.Diagnostics;

namespace RegistryDR.Tests.Infrastructure.AwsStandIns;

/// <summary>
/// Runs Debian's awscli 2 (<c>/usr/bin/aws</c>; the first <c>aws</c> on PATH may be another
/// one) with only the keys given, so nothing from the machine's profiles, environment or
/// instance metadata can change what it signs with or where it sends.
/// </summary>
internal static class AwsCli
{
    public const string Path = "/usr/bin/aws";

    public sealed record Result(int ExitCode, string StandardOutput, string StandardError);

    public static async Task<Result> RunAsync(StandInCredentials credentials, params string[] arguments)
    {
        var startInfo = new ProcessStartInfo(Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) startInfo.ArgumentList.Add(a);

        // Every AWS_ variable inherited could redirect or re-key awscli (AWS_PROFILE,
        // AWS_ENDPOINT_URL, AWS_SESSION_TOKEN, ...): drop them all, then set exactly ours.
        foreach (var name in startInfo.Environment.Keys.Where(k => k.StartsWith("AWS_", StringComparison.Ordinal)).ToList())
            startInfo.Environment.Remove(name);
        startInfo.Environment["AWS_ACCESS_KEY_ID"] = credentials.AccessKeyId;
        startInfo.Environment["AWS_SECRET_ACCESS_KEY"] = credentials.SecretAccessKey;
        if (credentials.SessionToken is not null) startInfo.Environment["AWS_SESSION_TOKEN"] = credentials.SessionToken;
        startInfo.Environment["AWS_CONFIG_FILE"] = "/dev/null";
        startInfo.Environment["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null";
        startInfo.Environment["AWS_EC2_METADATA_DISABLED"] = "true";
        startInfo.Environment["AWS_PAGER"] = "";
        // One try: a rejected request must fail the command, not be retried into the count.
        startInfo.Environment["AWS_MAX_ATTEMPTS"] = "1";

        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException($"{Path} did not start.");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path} {string.Join(' ', arguments)} did not finish within 60 s.");
        }
        return new Result(process.ExitCode, await stdout, await stderr);
    }
}
