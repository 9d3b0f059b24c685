using System.Globalization;
using Microsoft.Extensions.Logging;
using RegistryDR.Backup;
using RegistryDR.Retention;
using RegistryDR.Stores;

namespace RegistryDR.Tests.Retention;

internal static class RetentionTestSupport
{
    /// <summary>A set as the catalog would report it, with an id made from <paramref name="time"/> (whole seconds, UTC).</summary>
    public static BackupSetInfo Set(DateTimeOffset time, bool complete = true, string suffix = "000000")
    {
        var id = time.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture) + "-" + suffix;
        Assert.IsTrue(BackupLayout.TryParseTime(id, out var parsed));
        return new BackupSetInfo(id, parsed, 1000, complete ? 4 : 2, complete ? BackupSetState.Complete : BackupSetState.Incomplete);
    }

    /// <summary>Writes a set's objects by hand: the three artifacts, then (when complete) a manifest whose content the catalog never reads.</summary>
    public static async Task<string> WriteSetAsync(IBackupStore store, DateTimeOffset time, bool complete = true)
    {
        var id = BackupLayout.NewBackupId(time);
        foreach (var artifact in new[] { BackupLayout.GlobalsArtifact, BackupLayout.DatabaseArtifact, BackupLayout.ConfigArtifact })
            await store.PutAsync(BackupLayout.ArtifactKey(id, artifact), new MemoryStream(new byte[100]), CancellationToken.None);
        if (complete)
            await store.PutAsync(BackupLayout.ManifestKey(id), new MemoryStream("{}"u8.ToArray()), CancellationToken.None);
        return id;
    }

    public static async Task<List<string>> KeysAsync(IBackupStore store, string prefix = BackupLayout.Root)
    {
        var keys = new List<string>();
        await foreach (var item in store.ListAsync(prefix, CancellationToken.None)) keys.Add(item.Key);
        keys.Sort(StringComparer.Ordinal);
        return keys;
    }

    public static List<string> Ids(this RetentionPlan plan, RetentionAction action) =>
        plan.Sets.Where(s => s.Action == action).Select(s => s.BackupId).ToList();
}

/// <summary>Keeps every formatted log line, to check what an operator would read.</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    private readonly List<(LogLevel Level, string Message)> _entries = [];

    public IReadOnlyList<(LogLevel Level, string Message)> Entries { get { lock (_entries) return _entries.ToList(); } }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_entries) _entries.Add((logLevel, formatter(state, exception)));
    }
}

/// <summary>A store that records deletes and can be told to fail them for some keys.</summary>
internal sealed class InstrumentedStore(IBackupStore inner, Func<string, bool>? failDelete = null) : RegistryDR.Tests.Infrastructure.ForwardingStore(inner)
{
    private readonly List<string> _deleted = [];

    public IReadOnlyList<string> Deleted { get { lock (_deleted) return _deleted.ToList(); } }

    public override string Description => Inner.Description;

    public override Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken) => Inner.PutAsync(key, content, cancellationToken);

    public override Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken) => Inner.OpenReadAsync(key, cancellationToken);

    public override IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => Inner.ListAsync(prefix, cancellationToken);

    public override Task DeleteAsync(string key, CancellationToken cancellationToken)
    {
        if (failDelete?.Invoke(key) == true)
            throw new StoreUnavailableException($"{Description} refused to delete '{key}' (test).");
        lock (_deleted) _deleted.Add(key);
        return Inner.DeleteAsync(key, cancellationToken);
    }

    public override Task CheckAccessAsync(CancellationToken cancellationToken) => Inner.CheckAccessAsync(cancellationToken);
}
