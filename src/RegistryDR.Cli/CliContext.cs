using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using RegistryDR.Backup;
using RegistryDR.Configuration;
using RegistryDR.Postgres;
using RegistryDR.Processes;
using RegistryDR.Restore;
using RegistryDR.Stores;

namespace RegistryDR.Cli;

/// <summary>What every subcommand needs: validated options, a logger, the store, and the mapping of failures to exit codes.</summary>
internal sealed class CliContext : IDisposable
{
    public required RegistryDrOptions Options { get; init; }
    public required ILoggerFactory LoggerFactory { get; init; }
    public required IBackupStore Store { get; init; }
    public required bool Json { get; init; }
    public TimeProvider Time { get; } = TimeProvider.System;

    public void Dispose()
    {
        (Store as IDisposable)?.Dispose();
        LoggerFactory.Dispose();
    }

    internal static ILoggerFactory CreateLoggerFactory(LogLevel minimum) =>
        Microsoft.Extensions.Logging.LoggerFactory.Create(b =>
        {
            b.SetMinimumLevel(minimum);
            ConfigureConsole(b);
        });

    /// <summary>Logs go to stderr, one line per event; under systemd (JOURNAL_STREAM set) in journald's format.</summary>
    internal static void ConfigureConsole(ILoggingBuilder builder)
    {
        builder.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        if (Environment.GetEnvironmentVariable("JOURNAL_STREAM") is { Length: > 0 })
            builder.AddSystemdConsole(o => { o.IncludeScopes = true; o.UseUtcTimestamp = true; });
        else
            builder.AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = true; o.UseUtcTimestamp = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ssZ "; });
    }

    /// <summary>Loads the configuration, runs <paramref name="body"/>, and turns failures into a message and an exit code.</summary>
    public static async Task<int> RunAsync(ParseResult parse, bool json, Func<CliContext, CancellationToken, Task<int>> body)
    {
        using var cts = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });

        RegistryDrOptions options;
        try
        {
            options = RegistryDrConfiguration.Load(parse.GetValue(RegistryDrCli.ConfigOption));
        }
        catch (ConfigurationException ex)
        {
            Console.Error.WriteLine(ex.Message);
            return ExitCodes.InvalidConfiguration;
        }
        var verbose = parse.GetValue(RegistryDrCli.VerboseOption);
        var loggers = CreateLoggerFactory(verbose ? LogLevel.Debug : LogLevel.Information);
        using var context = new CliContext
        {
            Options = options,
            LoggerFactory = loggers,
            Store = BackupStoreFactory.Create(options.Store, logger: loggers.CreateLogger("RegistryDR.Stores")),
            Json = json,
        };
        var logger = context.LoggerFactory.CreateLogger("registry-dr");
        if (RegistryDrConfiguration.PermissionWarning(parse.GetValue(RegistryDrCli.ConfigOption)) is { } warning)
            logger.LogWarning("{Warning}", warning);
        try
        {
            return await body(context, cts.Token);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            Console.Error.WriteLine("Interrupted.");
            return ExitCodes.Cancelled;
        }
        catch (Exception ex) when (Classify(ex) is { } code)
        {
            // The message is the operator's instruction; stack traces only with --verbose.
            if (verbose) logger.LogError(ex, "{Message}", ex.Message);
            Console.Error.WriteLine("error: " + ex.Message);
            return code;
        }
    }

    private static int? Classify(Exception ex) => ex switch
    {
        ConfigurationException => ExitCodes.InvalidConfiguration,
        Agent.BootstrapFailedException b when b.InnerException is BackupNotFoundException => ExitCodes.NoBackup,
        Agent.BootstrapFailedException b when b.InnerException is RestoreFailedException => ExitCodes.RestoreFailed,
        Agent.BootstrapFailedException => ExitCodes.Failed,
        Aws.InstanceMetadataUnavailableException => ExitCodes.Failed,
        BackupNotFoundException or Continuous.RecoveryPlanException => ExitCodes.NoBackup,
        Continuous.CorruptWalException => ExitCodes.VerificationFailed,
        RestoreFailedException r when r.InnerException is Continuous.CorruptWalException or Continuous.RecoveryPlanException => ExitCodes.VerificationFailed,
        Continuous.RecoveryFailedException or Continuous.ForeignClusterException => ExitCodes.Failed,
        ArtifactCorruptException or InvalidManifestException => ExitCodes.VerificationFailed,
        RestoreFailedException r when r.InnerException is ArtifactCorruptException or InvalidManifestException => ExitCodes.VerificationFailed,
        RestoreFailedException => ExitCodes.RestoreFailed,
        Retention.PruneFailedException => ExitCodes.Failed,
        BackupFailedException or StoreUnavailableException or DatabaseUnavailableException or ProcessFailedException
            or IOException or UnauthorizedAccessException or TimeoutException or Archive.UnsafeArchiveException => ExitCodes.Failed,
        _ => null,
    };
}
