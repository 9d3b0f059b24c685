using Amazon.Runtime;
using RegistryDR.Configuration;
using RegistryDR.Stores.Internal;

namespace RegistryDR.Stores;

public static class BackupStoreFactory
{
    /// <summary>
    /// The store that <c>Store:Url</c> names, as it is: no <see cref="StoreMarker"/> check (tests,
    /// and <c>init-store</c>, which writes the marker). S3 credentials come from the SDK's default
    /// chain (environment, profile, instance role) unless given.
    /// </summary>
    public static IBackupStore Create(StoreOptions options, AWSCredentials? credentials = null,
        Monitoring.IOperationEvents? events = null, Microsoft.Extensions.Logging.ILogger? logger = null, TimeProvider? time = null)
    {
        var location = StoreLocation.Parse(options.Url);
        return location.Kind switch
        {
            StoreKind.FileSystem => new FileSystemStore(location.Path),
            StoreKind.S3 => new S3Store(location, options, credentials, events, logger, time),
            _ => throw new NotSupportedException(location.Kind.ToString()),
        };
    }

    /// <summary>
    /// The store as every command, the worker and the agent use it: every operation first checks
    /// that the store carries <see cref="StoreMarker"/> and refuses with
    /// <see cref="StoreNotInitializedException"/> (saying what to check) when it does not. A store
    /// with backups but no marker (made before markers existed) is adopted: the marker is written.
    /// </summary>
    /// <param name="firstBoot">Initialise an empty store instead of refusing it: the agent's first boot with <c>Agent:AllowFirstBoot</c>.</param>
    /// <param name="hint">Added to the refusal (the agent names Agent:AllowFirstBoot).</param>
    public static IBackupStore Open(StoreOptions options, AWSCredentials? credentials = null,
        Monitoring.IOperationEvents? events = null, Microsoft.Extensions.Logging.ILogger? logger = null, TimeProvider? time = null,
        bool firstBoot = false, string? hint = null) =>
        new MarkedStore(Create(options, credentials, events, logger, time), StoreLocation.Parse(options.Url), logger, time ?? TimeProvider.System)
        {
            FirstBoot = firstBoot,
            Hint = hint,
        };
}
