using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RegistryDR.Cli.Rendering;
using RegistryDR.Configuration;
using RegistryDR.Continuous;
using RegistryDR.Stores;

namespace RegistryDR.Cli;

/// <summary>The command line of continuous mode (<c>Database:Mode</c> Continuous): wal-push, and list/verify/restore/status over the continuous archive.</summary>
internal static class ContinuousCommands
{
    /// <summary>How long one wal-push may take: PostgreSQL's archiver waits for it, so it must end.</summary>
    private static readonly TimeSpan PushTimeout = TimeSpan.FromMinutes(10);

    public static Command WalPushCommand()
    {
        var path = new Argument<string>("path") { Description = "The WAL file to archive: PostgreSQL's %p." };
        var command = new Command("wal-push",
            "PostgreSQL's archive_command in continuous mode (archive_command = 'registry-dr wal-push %p'): store one WAL file, or refuse it (fenced node, another cluster, a different file of the same name). Exit 0 only when the file is in the store.") { path };
        command.SetAction(async (parse, _) =>
        {
            RegistryDrOptions options;
            try
            {
                options = RegistryDrConfiguration.Load(parse.GetValue(RegistryDrCli.ConfigOption));
            }
            catch (ConfigurationException ex)
            {
                await Console.Error.WriteLineAsync(ex.Message);
                return ExitCodes.InvalidConfiguration;
            }
            // Its output goes to PostgreSQL's log: warnings and refusals only, unless --verbose.
            using var loggers = CliContext.CreateLoggerFactory(parse.GetValue(RegistryDrCli.VerboseOption) ? LogLevel.Debug : LogLevel.Warning);
            var logger = loggers.CreateLogger("registry-dr wal-push");
            using var cts = new CancellationTokenSource(PushTimeout);
            var store = BackupStoreFactory.Create(options.Store, logger: loggers.CreateLogger("RegistryDR.Stores"));
            try
            {
                await new WalArchiver(options, store, logger, TimeProvider.System).PushAsync(parse.GetValue(path)!, cts.Token);
                return ExitCodes.Success;
            }
            catch (Exception ex) when (ex is WalRefusedException or ForeignClusterException or StoreUnavailableException or IOException or UnauthorizedAccessException
                                       or InvalidDataException or OperationCanceledException or Amazon.Runtime.AmazonServiceException or Amazon.Runtime.AmazonClientException)
            {
                await Console.Error.WriteLineAsync("registry-dr wal-push: " + (ex is OperationCanceledException ? $"did not finish within {PushTimeout}; PostgreSQL will try again." : ex.Message));
                return ExitCodes.Failed;
            }
            finally
            {
                (store as IDisposable)?.Dispose();
            }
        });
        return command;
    }

    public static async Task<int> ListAsync(CliContext ctx, CancellationToken ct)
    {
        var catalog = new ContinuousCatalog(ctx.Store);
        var sets = await catalog.ListBaseBackupsAsync(ct);
        var wal = await catalog.ListWalAsync(ct);
        var segments = wal.Where(w => w.File.Kind == WalFileKind.Segment).ToList();
        if (ctx.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                baseBackups = sets,
                wal = new { files = wal.Count, storedBytes = wal.Sum(w => w.StoredSize), oldest = segments.FirstOrDefault()?.File.Name, newest = segments.LastOrDefault()?.File.Name, newestArchivedAt = segments.MaxBy(s => s.ArchivedAt)?.ArchivedAt },
            }, RegistryDrCli.JsonOutput));
            return ExitCodes.Success;
        }
        if (sets.Count == 0) Console.WriteLine($"No base backups in {ctx.Store.Description}.");
        else
        {
            Console.WriteLine($"{"BASE BACKUP ID",-27} {"TIME (UTC)",-20} {"SIZE",12} STATE");
            foreach (var s in sets)
                Console.WriteLine($"{s.BackupId,-27} {s.Time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),-20} {RegistryDR.Backup.SetFormat.Bytes(s.Size),12} {(s.IsComplete ? "complete" : "INCOMPLETE")}");
        }
        Console.WriteLine(segments.Count == 0
            ? "WAL: none archived"
            : $"WAL: {wal.Count} file(s), {RegistryDR.Backup.SetFormat.Bytes(wal.Sum(w => w.StoredSize))}, segments {segments[0].File.Name} to {segments[^1].File.Name}, newest archived {segments.Max(s => s.ArchivedAt):u}");
        return ExitCodes.Success;
    }

    public static async Task<int> VerifyAsync(CliContext ctx, string? id, CancellationToken ct)
    {
        var progress = TerminalProgress.For(ctx.Json);
        var report = await ContinuousVerifier.VerifyAsync(ctx.Store, id, ctx.LoggerFactory.CreateLogger("RegistryDR.Continuous"), ctx.Time, progress, ct);
        (progress as TerminalProgress)?.Done();
        if (ctx.Json) Console.WriteLine(JsonSerializer.Serialize(new { report.BackupId, valid = true, report.Artifacts, walFiles = report.WalFiles, walStoredBytes = report.WalStoredBytes, report.FirstSegment, report.LastSegment, resultingPoint = report.ResultingPoint }, RegistryDrCli.JsonOutput));
        else
        {
            Console.WriteLine($"Base backup {report.BackupId} is valid, and so is the WAL it replays to the end of the archive.");
            foreach (var a in report.Artifacts) Console.WriteLine($"  {a.Name,-10} {a.Size,14:N0} bytes  {a.Detail}");
            Console.WriteLine($"  {"wal",-10} {report.WalStoredBytes,14:N0} bytes  {report.WalFiles} file(s), {report.FirstSegment} to {report.LastSegment}, each with the SHA-256 it was archived with");
            Console.WriteLine($"  A restore to latest from it returns to {report.ResultingPoint:u}.");
        }
        return ExitCodes.Success;
    }

    public static async Task<int> RestoreAsync(CliContext ctx, string? to, string? baseBackupId, bool dryRun, CancellationToken ct)
    {
        RecoveryTarget target;
        try
        {
            target = RecoveryTarget.Parse(to);
        }
        catch (FormatException ex)
        {
            throw new ConfigurationException(ex.Message);
        }
        var service = new ContinuousRestoreService(ctx.Options, ctx.Store, ctx.LoggerFactory.CreateLogger<ContinuousRestoreService>(), ctx.Time);
        var progress = TerminalProgress.For(ctx.Json || dryRun);
        PointInTimeResult result;
        try
        {
            // Agent:Region, as the logical restore: over a store another region wrote last (a failover or failback by hand), the restore is a takeover.
            result = await service.RestoreAsync(new PointInTimeRequest(target, baseBackupId == "latest" ? null : baseBackupId, dryRun)
            {
                InstanceId = ctx.Options.Agent.InstanceId, Region = ctx.Options.Agent.Region,
            }, progress, ct);
        }
        catch (RecoveryPlanException ex)
        {
            throw new Backup.BackupNotFoundException(ex.Message);
        }
        (progress as TerminalProgress)?.Done();
        var plan = result.Plan;
        if (ctx.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                target = target.ToString(),
                dryRun = result.DryRun,
                baseBackupId = plan.Base.BackupId,
                walSegments = plan.Segments.Count,
                walBytes = plan.WalBytes,
                walStoredBytes = plan.WalStoredBytes,
                firstSegment = plan.Segments.FirstOrDefault()?.File.Name,
                lastSegment = plan.LastSegment?.File.Name,
                timeline = plan.TargetTimeline,
                resultingPoint = plan.ResultingPoint,
                recovered = result.Recovered,
                steps = result.Steps,
                elapsedSeconds = result.Elapsed.TotalSeconds,
            }, RegistryDrCli.JsonOutput));
        }
        else
        {
            Console.WriteLine(result.DryRun
                ? $"Plan for restoring to {target} (dry run: nothing was changed):"
                : $"Restored to {target} in {result.Elapsed.TotalSeconds:F1} s:");
            for (var i = 0; i < result.Steps.Count; i++) Console.WriteLine($"  {i + 1}. {result.Steps[i]}");
            if (result.Recovered is { } r)
                Console.WriteLine($"Recovered: timeline {r.Timeline} at {r.EndLsn}; newest transaction {r.LastTransactionAt?.ToString("u", CultureInfo.InvariantCulture) ?? "none replayed"}" +
                                  (r.StopReason is null ? "" : $"; {r.StopReason}") + (r.TargetNotReachedSoLatest ? "; nothing committed after the target was archived, so this is the state at it" : ""));
        }
        return ExitCodes.Success;
    }

    public static void PrintWalStatus(WalArchiveStatus wal)
    {
        Console.WriteLine(wal.NewestSegment is null
            ? "Newest WAL:      none archived"
            : $"Newest WAL:      {wal.NewestSegment}, archived {wal.NewestArchivedAt:u}, {Age(wal.Age!.Value)} ago ({wal.Files} file(s), {RegistryDR.Backup.SetFormat.Bytes(wal.StoredBytes)})");
        if (wal.Problem is not null) Console.WriteLine($"WAL problem:     {wal.Problem}");
    }

    private static string Age(TimeSpan age) => age.TotalDays >= 1 ? $"{age.TotalDays:F1} days" : age.TotalHours >= 1 ? $"{age.TotalHours:F1} hours" : age.TotalMinutes >= 1 ? $"{age.TotalMinutes:F0} minutes" : $"{age.TotalSeconds:F0} seconds";
}
