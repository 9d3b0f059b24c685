using Amazon.Runtime;
using RegistryDR.Configuration;

namespace RegistryDR.Stores;

public static class BackupStoreFactory
{
    /// <summary>The store that <c>Store:Url</c> names. S3 credentials come from the SDK's default chain (environment, profile, instance role) unless given.</summary>
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
}
