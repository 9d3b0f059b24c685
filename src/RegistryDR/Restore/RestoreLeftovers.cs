using Microsoft.Extensions.Logging;
using Npgsql;
using RegistryDR.Archive.Internal;
using RegistryDR.Configuration;
using RegistryDR.Postgres;

namespace RegistryDR.Restore;

/// <summary>Something a restore or drill left on the node: its kind, where it is, how big, and how to remove it.</summary>
public sealed record Leftover(string Kind, string Location, long Bytes, string Removal);

/// <summary>
/// What restores and drills leave behind on the node, and the clean-up of whatever a killed one
/// left: staging directories (in <c>Restore:StagingDirectory</c>, holding the roles' SCRAM hashes,
/// the dump and the config archive), the extracted config beside the targets, the scratch
/// databases. A staging directory is in use while its owner holds a lock on the
/// <see cref="OwnerLockName"/> file inside it; one whose lock nobody holds belongs to a process
/// that is gone and is removed. Previous databases (<c>…_rdr_prev_…</c>) and directories
/// (<c>.&lt;dir&gt;.registry-dr-prev-*</c>) outside an interrupted restore are only reported: they may
/// be kept on purpose (<c>Restore:KeepPrevious</c>).
/// </summary>
public sealed partial class RestoreLeftovers(RegistryDrOptions options, ILogger logger)
{
    /// <summary>The file inside a staging directory its owner holds an exclusive lock on while it works.</summary>
    public const string OwnerLockName = ".registry-dr-owner.lock";

    internal const string RestoreStagingPrefix = "registry-dr-restore-";
    internal const string DrillStagingPrefix = "registry-dr-drill-";
    internal const string ConfigStagingMarker = ".registry-dr-restore-";
    internal const string ConfigPreviousMarker = ".registry-dr-prev-";

    private readonly PostgresConnectionFactory _postgres = new(options.Database, logger);

    internal string StagingRoot => options.Restore.StagingDirectory is { Length: > 0 } s ? s : Path.GetTempPath();

    /// <summary>
    /// Creates a private (0700) staging directory and takes its owner lock; dispose the result to
    /// release it. Until then no clean-up touches the directory.
    /// </summary>
    public static FileStream CreateOwnedDirectory(string path)
    {
        Secrets.PrivateFiles.CreateNewDirectory(path);
        return new FileStream(Path.Combine(path, OwnerLockName), new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.None,
            UnixCreateMode = Secrets.PrivateFiles.FileMode,
        });
    }

    /// <summary>Removes the staging directories named <paramref name="prefix"/>* in <paramref name="stagingRoot"/> that nobody owns any more.</summary>
    public static void RemoveUnowned(string stagingRoot, string prefix, ILogger logger)
    {
        if (!Directory.Exists(stagingRoot)) return;
        foreach (var dir in Directory.EnumerateDirectories(stagingRoot, prefix + "*"))
        {
            if (IsOwned(dir)) continue;
            try
            {
                UnixFileSystem.DeleteTree(dir); // names need not be UTF-8
                LogRemovedStale(logger, dir);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogCannotRemoveStale(logger, dir, ex.Message);
            }
        }
    }

    /// <summary>Whether a staging directory's owner is alive (holds its lock).</summary>
    private static bool IsOwned(string directory)
    {
        var lockPath = Path.Combine(directory, OwnerLockName);
        if (!File.Exists(lockPath)) return false; // killed before it took its lock, or made by an older version
        try
        {
            using var probe = new FileStream(lockPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return true; // not ours to judge
        }
    }

    /// <summary>
    /// Removes what dead restores and drills left: staging directories nobody owns, extracted
    /// config beside the targets and the scratch restore database when no restore runs
    /// (<paramref name="restoreRunning"/>), the drill database when no drill runs. Returns one line per
    /// thing removed; what cannot be removed is logged and left for <see cref="FindAsync"/> to report.
    /// </summary>
    public async Task<IReadOnlyList<string>> CleanAsync(bool restoreRunning, CancellationToken cancellationToken)
    {
        var removed = new List<string>();
        var drillRunning = false;
        if (Directory.Exists(StagingRoot))
        {
            foreach (var dir in Directory.EnumerateDirectories(StagingRoot))
            {
                var name = Path.GetFileName(dir);
                var isRestore = name.StartsWith(RestoreStagingPrefix, StringComparison.Ordinal);
                var isDrill = name.StartsWith(DrillStagingPrefix, StringComparison.Ordinal);
                if (!isRestore && !isDrill) continue;
                if (IsOwned(dir))
                {
                    drillRunning |= isDrill;
                    continue;
                }
                TryRemove(dir, $"staging directory {dir} of a {(isDrill ? "drill" : "restore")} that is no longer running", removed);
            }
        }
        if (!restoreRunning)
            foreach (var dir in Beside(ConfigStagingMarker))
                TryRemove(dir, $"extracted config {dir} of a restore that is no longer running", removed);
        var scratch = new List<string>();
        if (!restoreRunning) scratch.Add(RestoreService.ScratchDatabaseFor(options.Database.Name));
        if (!drillRunning) scratch.Add(DrillService.DrillDatabaseFor(options.Database.Name));
        try
        {
            await using var connection = await _postgres.OpenAsync(options.Database.MaintenanceDatabase, cancellationToken);
            foreach (var db in await InterruptedRestore.ExistingAsync(connection, scratch, cancellationToken))
            {
                await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {RestoreService.Quote(db)} WITH (FORCE)", connection);
                await drop.ExecuteNonQueryAsync(cancellationToken);
                removed.Add($"scratch database '{db}' of a restore or drill that is no longer running");
            }
        }
        catch (Exception ex) when (ex is DatabaseUnavailableException or NpgsqlException)
        {
            LogCannotClean("the scratch databases", ex.Message);
        }
        foreach (var line in removed) LogRemoved(line);
        return removed;
    }

    /// <summary>What is left on the node now, with sizes: staging directories, extracted and previous config directories, scratch and previous databases.</summary>
    public async Task<IReadOnlyList<Leftover>> FindAsync(CancellationToken cancellationToken)
    {
        var found = new List<Leftover>();
        if (Directory.Exists(StagingRoot))
            foreach (var dir in Directory.EnumerateDirectories(StagingRoot)
                         .Where(d => Path.GetFileName(d).StartsWith(RestoreStagingPrefix, StringComparison.Ordinal) || Path.GetFileName(d).StartsWith(DrillStagingPrefix, StringComparison.Ordinal)))
                found.Add(new Leftover(IsOwned(dir) ? "staging directory (in use)" : "staging directory", dir, TreeBytes(dir), $"rm -rf '{dir}'"));
        foreach (var dir in Beside(ConfigStagingMarker))
            found.Add(new Leftover("extracted config", dir, TreeBytes(dir), $"rm -rf '{dir}'"));
        foreach (var dir in Beside(ConfigPreviousMarker))
            found.Add(new Leftover("previous config directory", dir, TreeBytes(dir), $"rm -rf '{dir}'"));
        await using var connection = await _postgres.OpenAsync(options.Database.MaintenanceDatabase, cancellationToken);
        await using var cmd = new NpgsqlCommand(
            "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY(@exact) OR datname LIKE @prev ESCAPE '\\' ORDER BY 1", connection);
        cmd.Parameters.AddWithValue("exact", new[] { RestoreService.ScratchDatabaseFor(options.Database.Name), DrillService.DrillDatabaseFor(options.Database.Name) });
        cmd.Parameters.AddWithValue("prev", RestoreService.PreviousDatabasePrefixFor(options.Database.Name).Replace("\\", "\\\\").Replace("_", "\\_").Replace("%", "\\%") + "%");
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var name = reader.GetString(0);
            var kind = name.Contains("_rdr_prev_", StringComparison.Ordinal) ? "previous database" : "scratch database";
            found.Add(new Leftover(kind, name, reader.GetInt64(1), $"DROP DATABASE {RestoreService.Quote(name)};"));
        }
        return found;
    }

    /// <summary>Directories beside each configured config directory whose name carries <paramref name="marker"/>: <c>.&lt;name&gt;&lt;marker&gt;*</c>.</summary>
    private IEnumerable<string> Beside(string marker)
    {
        foreach (var target in options.Config.EffectiveDirectories)
        {
            var full = Path.TrimEndingDirectorySeparator(target);
            var parent = Path.GetDirectoryName(full);
            if (parent is null || !Directory.Exists(parent)) continue;
            var prefix = "." + Path.GetFileName(full) + marker;
            foreach (var dir in Directory.EnumerateDirectories(parent, "*", new EnumerationOptions { AttributesToSkip = 0 }))
                if (Path.GetFileName(dir).StartsWith(prefix, StringComparison.Ordinal)) yield return dir;
        }
    }

    private void TryRemove(string dir, string what, List<string> removed)
    {
        try
        {
            UnixFileSystem.DeleteTree(dir); // names need not be UTF-8
            removed.Add(what);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogCannotClean(dir, ex.Message);
        }
    }

    /// <summary>Bytes of the regular files under <paramref name="dir"/> (symbolic links not followed).</summary>
    internal static long TreeBytes(string dir)
    {
        long total = 0;
        try
        {
            foreach (var file in new DirectoryInfo(dir).EnumerateFiles("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = true }))
                if (file.LinkTarget is null) total += file.Length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        return total;
    }

    [LoggerMessage(8032, LogLevel.Warning, "Removed the staging directory {Directory} of a run that is no longer running")]
    private static partial void LogRemovedStale(ILogger logger, string directory);

    [LoggerMessage(8033, LogLevel.Warning, "Could not remove {Directory}: {Reason}; `registry-dr status` lists it")]
    private static partial void LogCannotRemoveStale(ILogger logger, string directory, string reason);

    [LoggerMessage(8030, LogLevel.Warning, "Removed the {What}")]
    private partial void LogRemoved(string what);

    [LoggerMessage(8031, LogLevel.Warning, "Could not remove {What} ({Reason}); it is listed as a leftover, and removed by a later `registry-dr status`, restore or worker start that can reach it")]
    private partial void LogCannotClean(string what, string reason);
}
