using RegistryDR.Configuration;

namespace RegistryDR.Tests.Infrastructure;

internal static class StoreOptionsExtensions
{
    /// <summary>The settings any S3-compatible server that predates flexible checksums needs (Ceph 16 here).</summary>
    public static void ConfigureFor(this StoreOptions store, CephS3Server s3, int partSizeMiB = 16)
    {
        store.ServiceUrl = s3.Endpoint;
        store.Region = s3.Region;
        store.ForcePathStyle = true;
        store.Checksums = S3ChecksumMode.WhenRequired;
        store.ServerSideEncryption = ServerSideEncryptionMode.None;
        store.PartSizeMiB = partSizeMiB;
    }
}
