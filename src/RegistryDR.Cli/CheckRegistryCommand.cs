using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RegistryDR.Registry;

namespace RegistryDR.Cli;

/// <summary>
/// <c>registry-dr check-registry URL</c>: walks the running registry through its HTTP API and says
/// which images do not resolve (docs/cli.md, "check-registry"). It needs no registry-dr
/// configuration: everything it uses is on its command line, so it runs from any machine that
/// reaches the registry.
/// </summary>
internal static class CheckRegistryCommand
{
    /// <summary>The walk was complete and something does not resolve (a tag, a manifest, a blob).</summary>
    public const int ExitMissing = 7;

    public static Command Create()
    {
        var url = new Argument<string>("URL") { Description = "The registry's base URL, e.g. https://registry.example.com (the API is under /v2/)." };
        var credentials = new Option<string?>("--credentials-file")
        {
            Description = "A containers auth file ({\"auths\": {\"host[:port]\": {\"auth\": \"base64(user:password)\"}}}, as skopeo/podman/docker login write it) for basic auth and token requests. Default: anonymous.",
            HelpName = "PATH",
        };
        var ca = new Option<string?>("--ca-file") { Description = "PEM file with the CA certificate(s) of the registry's TLS certificate. Default: the system's trust store.", HelpName = "PATH" };
        var concurrency = new Option<int>("--concurrency") { Description = "HTTP requests in flight at once (1-64).", DefaultValueFactory = _ => 8, HelpName = "N" };
        var requestTimeout = new Option<int>("--request-timeout") { Description = "Seconds one request may take (1-600).", DefaultValueFactory = _ => 30, HelpName = "SECONDS" };
        var timeout = new Option<int>("--timeout") { Description = "Seconds the whole check may take (1-86400).", DefaultValueFactory = _ => 1800, HelpName = "SECONDS" };
        var pageSize = new Option<int>("--page-size") { Description = "Entries per page of the catalog and tag lists (the n parameter, 1-10000).", DefaultValueFactory = _ => 100, HelpName = "N" };
        var json = new Option<bool>("--json") { Description = "The report as JSON on stdout." };
        var command = new Command("check-registry",
            "Walk the running registry through its HTTP API (catalog, tags, manifests and index children, a HEAD of every config and layer) and report, per repository, the tags, manifests and blobs that do not resolve. " +
            $"Exit 0 when everything resolves, {ExitMissing} when something is missing, 1 when the check could not be completed.")
        {
            url, credentials, ca, concurrency, requestTimeout, timeout, pageSize, json,
        };
        command.SetAction((parse, _) => !Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var parsed)
            ? Task.FromResult(Fail(parse.GetValue(json), ExitCodes.InvalidConfiguration, $"The registry URL '{parse.GetValue(url)}' is not an absolute URL; give it as https://registry.example.com."))
            : RunAsync(parse, new RegistryCheckOptions
        {
            RegistryUrl = parsed,
            CredentialsFile = parse.GetValue(credentials),
            CaFile = parse.GetValue(ca),
            Concurrency = parse.GetValue(concurrency),
            RequestTimeout = TimeSpan.FromSeconds(parse.GetValue(requestTimeout)),
            Timeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
            PageSize = parse.GetValue(pageSize),
        }, parse.GetValue(json)));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, RegistryCheckOptions options, bool json)
    {
        using var cts = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        var verbose = parse.GetValue(RegistryDrCli.VerboseOption);
        using var loggers = CliContext.CreateLoggerFactory(verbose ? LogLevel.Debug : LogLevel.Information);
        var logger = loggers.CreateLogger("registry-dr");
        RegistryCheckReport report;
        try
        {
            report = await new RegistryChecker(options, loggers.CreateLogger<RegistryChecker>()).CheckAsync(cts.Token);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return Fail(json, ExitCodes.Cancelled, "Interrupted.");
        }
        catch (RegistryCheckConfigurationException ex)
        {
            return Fail(json, ExitCodes.InvalidConfiguration, ex.Message);
        }
        catch (Exception ex) when (ex is RegistryUnavailableException or TimeoutException)
        {
            if (verbose) logger.LogError(ex, "{Message}", ex.Message);
            return Fail(json, ExitCodes.Failed, ex.Message);
        }
        if (json) Console.WriteLine(JsonSerializer.Serialize(report, RegistryDrCli.JsonOutput));
        else Console.Write(Render(report));
        return !report.Complete ? ExitCodes.Failed : report.Problems.Count > 0 ? ExitMissing : ExitCodes.Success;
    }

    private static int Fail(bool json, int code, string message)
    {
        Console.Error.WriteLine("error: " + message);
        if (json) Console.WriteLine(JsonSerializer.Serialize(new { error = new { code, message } }, RegistryDrCli.JsonOutput));
        return code;
    }

    /// <summary>The report for a person: a summary line, then each repository's broken tags and why.</summary>
    internal static string Render(RegistryCheckReport report)
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine($"Registry {report.Registry}: {report.Repositories} repositories, {report.Tags} tags, {report.Manifests} manifests and {report.Blobs} blobs checked in {report.Elapsed.TotalSeconds:F1} s.");
        if (report.AllResolved)
        {
            text.AppendLine("Every tag, manifest and blob resolves.");
            return text.ToString();
        }
        if (report.Problems.Count > 0)
            text.AppendLine($"MISSING in {report.Problems.Count} of {report.Repositories} repositories ({report.Problems.Sum(p => p.BrokenTags.Count)} tags cannot be pulled):");
        foreach (var repository in report.Problems)
        {
            text.AppendLine($"{repository.Repository}: tags that cannot be pulled: {string.Join(", ", repository.BrokenTags)}");
            foreach (var tag in repository.UnresolvedTags)
                text.AppendLine($"  tag {tag.Tag} does not resolve: {tag.Reason}");
            foreach (var manifest in repository.UnresolvedManifests)
                text.AppendLine($"  manifest {manifest.Digest} does not resolve ({manifest.Reason}); named by {string.Join(", ", manifest.ReferencedBy)}; tags {string.Join(", ", manifest.Tags)}");
            foreach (var blob in repository.MissingBlobs)
                text.AppendLine($"  {blob.Kind} blob {blob.Digest} is missing ({blob.Reason}); named by manifest {string.Join(", ", blob.ReferencedBy)}; tags {string.Join(", ", blob.Tags)}");
        }
        if (report.Errors.Count > 0)
        {
            text.AppendLine($"NOT CHECKED ({report.Errors.Count}): the check is incomplete.");
            foreach (var error in report.Errors)
                text.AppendLine($"  {(error.Repository is null ? "" : error.Repository + ": ")}{error.What}: {error.Reason}");
        }
        return text.ToString();
    }
}
