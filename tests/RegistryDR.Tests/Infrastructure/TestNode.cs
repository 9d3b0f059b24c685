using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryDR.Configuration;
using RegistryDR.Stores;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// One registry "node" for a test: its own seeded database in the shared cluster, a config
/// tree shaped like Docker Trusted Registry's two directories, a password file, and options
/// pointing at a store. Everything is removed on dispose.
/// </summary>
internal sealed class TestNode : IAsyncDisposable
{
    public required PostgresCluster Cluster { get; init; }
    public required string Database { get; init; }
    public required string Root { get; init; }
    public required RegistryDrOptions Options { get; init; }
    public IReadOnlyList<string> ConfigDirectories => Options.Config.Directories;
    public string ConnectionString => Cluster.ConnectionString(Database);

    public static async Task<TestNode> CreateAsync(string storeUrl, Action<StoreOptions>? configureStore = null, int repositories = 200)
    {
        var cluster = await TestEnvironment.PostgresAsync();
        var database = await cluster.CreateDatabaseAsync();
        await RegistrySchema.CreateAndSeedAsync(cluster.ConnectionString(database), repositories);
        var root = Directory.CreateTempSubdirectory("rdr-node-").FullName;
        var passwordFile = Path.Combine(root, "db-password");
        File.WriteAllText(passwordFile, cluster.SuperUserPassword + "\n");
        File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        var dtrData = Path.Combine(root, "var", "local", "dtr");
        var dtrEtc = Path.Combine(root, "usr", "local", "etc", "dtr");
        BuildConfigTree(dtrData, dtrEtc);

        var options = new RegistryDrOptions
        {
            Database = new DatabaseOptions
            {
                Host = cluster.Host,
                Port = cluster.Port,
                Name = database,
                User = cluster.SuperUser,
                PasswordFile = passwordFile,
                BinDirectory = cluster.BinDirectory,
            },
            Config = new ConfigDirectoriesOptions { Directories = [dtrData, dtrEtc], Exclude = ["*.sock"] },
            Store = new StoreOptions { Url = storeUrl },
            Restore = new RestoreOptions { StagingDirectory = Path.Combine(root, "staging") },
            // Each node its own state file: the default under /var/lib is shared by the whole machine.
            Agent = new AgentOptions { StateFile = Path.Combine(root, "state", "node-state.json") },
        };
        Directory.CreateDirectory(options.Restore.StagingDirectory!);
        configureStore?.Invoke(options.Store);
        RegistryDrConfiguration.Validate(options);
        return new TestNode { Cluster = cluster, Database = database, Root = root, Options = options };
    }

    /// <summary>A tree with what config directories really hold: nesting, odd modes, a symlink, binary data, a non-root owner.</summary>
    private static void BuildConfigTree(string data, string etc)
    {
        Directory.CreateDirectory(Path.Combine(data, "ssl", "private"));
        Directory.CreateDirectory(Path.Combine(data, "replicas", "a1b2c3", "empty"));
        File.WriteAllText(Path.Combine(data, "license.json"), "{\"key_id\":\"test\",\"expiration\":\"2030-01-01\"}\n");
        File.WriteAllText(Path.Combine(data, "ssl", "server.crt"), "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n");
        File.WriteAllText(Path.Combine(data, "ssl", "private", "server.key"), "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n");
        File.SetUnixFileMode(Path.Combine(data, "ssl", "private", "server.key"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.SetUnixFileMode(Path.Combine(data, "ssl", "private"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var blob = new byte[300_000];
        new Random(7).NextBytes(blob);
        File.WriteAllBytes(Path.Combine(data, "replicas", "a1b2c3", "state.bin"), blob);
        File.CreateSymbolicLink(Path.Combine(data, "current"), "replicas/a1b2c3");
        File.WriteAllText(Path.Combine(data, "registry.sock"), "excluded by glob");

        Directory.CreateDirectory(Path.Combine(etc, "auth"));
        File.WriteAllText(Path.Combine(etc, "dtr.yml"), "storage:\n  s3:\n    bucket: images\nauth:\n  backend: managed\n");
        File.WriteAllText(Path.Combine(etc, "auth", "htpasswd"), "admin:$2y$05$abcdefghijklmnopqrstuv\n");
        File.SetUnixFileMode(Path.Combine(etc, "auth", "htpasswd"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        var hook = Path.Combine(etc, "hook.sh");
        File.WriteAllText(hook, "#!/bin/sh\nexit 0\n");
        File.SetUnixFileMode(hook, (UnixFileMode)0b111_101_101);
        if (Environment.IsPrivilegedProcess)
            RegistryDR.Archive.Internal.UnixFileSystem.SetOwner(Path.Combine(etc, "auth", "htpasswd"), 1234, 5678);
        var past = new DateTime(2024, 5, 6, 7, 8, 9, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(Path.Combine(data, "license.json"), past);
    }

    public IBackupStore CreateStore(CephS3Server? s3 = null) => s3 is null
        ? BackupStoreFactory.Create(Options.Store)
        : BackupStoreFactory.Create(Options.Store, new Amazon.Runtime.BasicAWSCredentials(s3.AccessKey, s3.SecretKey));

    /// <summary>What `registry-dr init-store` does, in one line: the store gets its marker, so commands (which refuse a store without one) accept it.</summary>
    public async Task InitializeStoreAsync(CephS3Server? s3 = null)
    {
        var store = CreateStore(s3);
        try
        {
            await StoreMarker.WriteAsync(store, "init-store", TimeProvider.System, CancellationToken.None);
        }
        finally
        {
            (store as IDisposable)?.Dispose();
        }
    }

    public static ILogger<T> Logger<T>() => NullLogger<T>.Instance;

    /// <summary>Simulates losing the node: the database and the config directories are gone.</summary>
    public async Task WipeAsync()
    {
        await Cluster.DropDatabaseAsync(Database);
        foreach (var dir in ConfigDirectories) Directory.Delete(dir, recursive: true);
    }

    public async ValueTask DisposeAsync()
    {
        try { await Cluster.DropDatabaseAsync(Database); } catch (Exception) { }
        try { Directory.Delete(Root, recursive: true); } catch (Exception) { }
    }

    public static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
}
