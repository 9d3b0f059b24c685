using RegistryDR.Tests.Infrastructure;

[assembly: Parallelize(Workers = 2, Scope = ExecutionScope.ClassLevel)]

namespace RegistryDR.Tests;

/// <summary>
/// The real servers the tests share: one PostgreSQL cluster and one Ceph RGW per test run,
/// started on first use and stopped when the run ends. Tests isolate themselves by creating
/// their own databases, buckets and directories.
/// </summary>
[TestClass]
public static class TestEnvironment
{
    private static readonly Lazy<Task<PostgresCluster>> Postgres = new(PostgresCluster.StartAsync);
    private static readonly Lazy<Task<CephS3Server>> S3 = new(() => CephS3Server.StartAsync());

    internal static Task<PostgresCluster> PostgresAsync() => Postgres.Value;

    internal static Task<CephS3Server> S3Async() => S3.Value;

    [AssemblyCleanup]
    public static async Task StopServersAsync()
    {
        if (Postgres.IsValueCreated && Postgres.Value.IsCompletedSuccessfully) await Postgres.Value.Result.DisposeAsync();
        if (S3.IsValueCreated && S3.Value.IsCompletedSuccessfully) await S3.Value.Result.DisposeAsync();
    }
}
