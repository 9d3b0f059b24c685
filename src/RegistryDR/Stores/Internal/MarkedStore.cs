using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace RegistryDR.Stores.Internal;

/// <summary>
/// A store that refuses to work until it has seen <see cref="StoreMarker"/>. A file store is
/// checked again before every operation (one small read): a file system unmounted while the worker
/// runs must stop the next backup, not receive it. An S3 store is checked once: a bucket does not
/// come and go under a running process.
/// </summary>
/// <remarks>
/// A store with backups or fencing generations but no marker was made before markers existed: it
/// is adopted (the marker is written, with a warning). An empty store is initialised only when
/// <see cref="FirstBoot"/> says so (the bootstrap agent with <c>Agent:AllowFirstBoot</c>).
/// </remarks>
internal sealed partial class MarkedStore(IBackupStore inner, StoreLocation location, ILogger? logger, TimeProvider time) : IBackupStore, IDisposable
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _seen;

    /// <summary>Initialise an empty, unmarked store instead of refusing it (the agent's first boot).</summary>
    public bool FirstBoot { get; init; }

    /// <summary>Added to the refusal, e.g. the agent's hint about Agent:AllowFirstBoot.</summary>
    public string? Hint { get; init; }

    public string Description => inner.Description;

    public bool CreateIsAtomic => inner.CreateIsAtomic;

    private async Task EnsureAsync(CancellationToken cancellationToken)
    {
        if (_seen && location.Kind == StoreKind.S3) return;
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_seen && location.Kind == StoreKind.S3) return;
            if (location.Kind == StoreKind.FileSystem) CheckDirectory(location);
            if (await StoreMarker.ReadAsync(inner, cancellationToken) is not null)
            {
                _seen = true;
                return;
            }
            var survey = await StoreMarker.SurveyAsync(inner, cancellationToken);
            if (survey.HasBackups)
            {
                LogAdopting(Description, StoreMarker.Key);
                try
                {
                    await StoreMarker.WriteAsync(inner, "adopted", time, cancellationToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Reading still works; whatever writes will fail on its own, with its own error.
                    LogAdoptFailed(Description, StoreMarker.Key, ex.Message);
                }
                _seen = true;
                return;
            }
            if (survey.IsEmpty && FirstBoot)
            {
                var (marker, written) = await StoreMarker.WriteAsync(inner, "first boot", time, cancellationToken);
                if (written) LogFirstBootInitialised(Description, StoreMarker.Key);
                _seen = true;
                return;
            }
            throw new StoreNotInitializedException(Refusal(location, survey.OtherObjects, Hint));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>A file store's directory must exist and be a directory: it is never created implicitly.</summary>
    internal static void CheckDirectory(StoreLocation location)
    {
        var path = location.Path;
        if (File.Exists(path))
            throw new StoreUnavailableException($"Store:Url {location}: {path} is a file, not a directory.");
        if (!Directory.Exists(path))
            throw new StoreNotInitializedException(
                $"Store:Url {location}: the directory {path} does not exist. If it is a mount point, mount it (`findmnt {path}`); " +
                $"if this is a new store, run `registry-dr init-store` once (it creates the directory and {StoreMarker.Key}).");
    }

    internal static string Refusal(StoreLocation location, int otherObjects, string? hint)
    {
        var what = otherObjects > 0
            ? $"holds {(otherObjects >= 10 ? "10 or more" : otherObjects.ToString(System.Globalization.CultureInfo.InvariantCulture))} object(s) but no {StoreMarker.Key} and no backups: it is not a RegistryDR store"
            : $"has no {StoreMarker.Key}: it was never initialised, or it is not the store you meant";
        var check = location.Kind == StoreKind.FileSystem
            ? $"Is the file system mounted? (an unmounted NFS mount point is an empty local directory: `findmnt {location.Path}`)"
            : $"Does Store:Url name the right bucket and prefix? (`aws s3 ls {location}/`)";
        var init = otherObjects > 0
            ? "Point Store:Url at an empty location or at the existing store."
            : "If this is a new store, run `registry-dr init-store` once.";
        return $"Store:Url {location} {what}. {check} {init}" + (hint is null ? "" : " " + hint);
    }

    public async Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        return await inner.PutAsync(key, content, cancellationToken);
    }

    public async Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        return await inner.OpenReadAsync(key, cancellationToken);
    }

    public async IAsyncEnumerable<StoreItem> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        await foreach (var item in inner.ListAsync(prefix, cancellationToken))
            if (item.Key != StoreMarker.Key) yield return item;
    }

    public async Task DeleteAsync(string key, CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        await inner.DeleteAsync(key, cancellationToken);
    }

    public async Task CheckAccessAsync(CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        await inner.CheckAccessAsync(cancellationToken);
    }

    public async Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        return await inner.TryCreateAsync(key, content, cancellationToken);
    }

    public async IAsyncEnumerable<StoreTemporary> ListTemporariesAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        await foreach (var temporary in inner.ListTemporariesAsync(prefix, cancellationToken)) yield return temporary;
    }

    public async Task DeleteTemporaryAsync(StoreTemporary temporary, CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        await inner.DeleteTemporaryAsync(temporary, cancellationToken);
    }

    public void Dispose()
    {
        (inner as IDisposable)?.Dispose();
        _gate.Dispose();
    }

    [LoggerMessage(8200, LogLevel.Warning, "Store {Store} has backups but no {Marker} (it was made before RegistryDR wrote one): writing it now")]
    private partial void LogAdopting(string store, string marker);

    [LoggerMessage(8201, LogLevel.Warning, "Store {Store}: could not write {Marker} ({Reason}); reading goes on, and anything that writes will fail with its own error")]
    private partial void LogAdoptFailed(string store, string marker, string reason);

    [LoggerMessage(8202, LogLevel.Warning, "Store {Store} is empty and Agent:AllowFirstBoot is set: initialised it ({Marker} written) for the first node")]
    private partial void LogFirstBootInitialised(string store, string marker);
}
