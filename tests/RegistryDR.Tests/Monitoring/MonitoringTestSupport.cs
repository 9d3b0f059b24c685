using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Configuration;
using RegistryDR.Monitoring;

namespace RegistryDR.Tests.Monitoring;

internal sealed record HttpAnswer(HttpStatusCode Status, string ContentType, string Body)
{
    public override string ToString() => $"{(int)Status} {ContentType}: {Body}";
}

/// <summary>What promtool said about an exposition.</summary>
internal sealed record PromtoolResult(int ExitCode, string Output)
{
    public override string ToString() => $"promtool exit {ExitCode}: {Output}";
}

internal static class MonitoringTestSupport
{
    public const string PromtoolPath = "/usr/bin/promtool";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>Monitoring options listening on a port the OS picks, so parallel test classes never collide.</summary>
    public static MonitoringOptions EphemeralPort(string? emfLogPath = null) => new()
    {
        Urls = ["http://127.0.0.1:0"],
        EmfLogPath = emfLogPath ?? "",
    };

    public static async Task<MonitoringServer> StartServerAsync(RegistryDrOptions options, OperationMetrics metrics, TimeProvider? time = null)
    {
        var server = new MonitoringServer(options, EphemeralPort(), metrics, NullLoggerFactory.Instance, time ?? TimeProvider.System);
        await server.StartAsync(CancellationToken.None);
        Assert.HasCount(1, server.Addresses, "the server must be listening");
        return server;
    }

    public static async Task<HttpAnswer> GetAsync(MonitoringServer server, string path, CancellationToken cancellationToken = default)
    {
        using var response = await Http.GetAsync(new Uri(server.Addresses[0] + path), cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        return new HttpAnswer(response.StatusCode, response.Content.Headers.ContentType?.ToString() ?? "", body);
    }

    /// <summary>Polls until <paramref name="done"/> holds for the answer, or 30 s pass (then returns the last answer).</summary>
    public static async Task<HttpAnswer> GetUntilAsync(MonitoringServer server, string path, Func<HttpAnswer, bool> done, CancellationToken cancellationToken = default)
    {
        var stopwatch = Stopwatch.StartNew();
        while (true)
        {
            var answer = await GetAsync(server, path, cancellationToken);
            if (done(answer) || stopwatch.Elapsed > TimeSpan.FromSeconds(30)) return answer;
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>Pipes <paramref name="exposition"/> to <c>promtool check metrics</c> (Debian's prometheus package).</summary>
    public static async Task<PromtoolResult> PromtoolCheckAsync(string exposition, CancellationToken cancellationToken = default)
    {
        Assert.IsTrue(File.Exists(PromtoolPath), $"{PromtoolPath} is missing: apt-get install prometheus (scripts/install-prerequisites.sh does)");
        var psi = new ProcessStartInfo(PromtoolPath)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("check");
        psi.ArgumentList.Add("metrics");
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.StandardInput.WriteAsync(exposition.AsMemory(), cancellationToken);
        process.StandardInput.Close();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        return new PromtoolResult(process.ExitCode, (await stdout + await stderr).Trim());
    }

    /// <summary>The samples of an exposition by series (<c>name{labels}</c> as written), for asserting values.</summary>
    public static IReadOnlyDictionary<string, double> Samples(string exposition)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in exposition.Split('\n'))
        {
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var space = line.LastIndexOf(' ');
            var value = line[(space + 1)..] switch
            {
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                "NaN" => double.NaN,
                var v => double.Parse(v, CultureInfo.InvariantCulture),
            };
            samples[line[..space]] = value;
        }
        return samples;
    }

    public static string Utf8(byte[] bytes) => Encoding.UTF8.GetString(bytes);
}
