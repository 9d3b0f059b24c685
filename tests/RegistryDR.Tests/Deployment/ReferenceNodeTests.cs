using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Npgsql;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;
using YamlDotNet.RepresentationModel;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// bootstrap/reference-node.sh on a Debian stand-in for a stock Amazon Linux 2023 node: `dnf`,
/// `postgresql-setup` and `systemctl` are small stubs that map what AL2023 would do onto what
/// Debian has (its PostgreSQL 15 binaries, pg_ctl instead of the unit), everything the script
/// writes lands under RDR_ROOT. Then the real things are checked: password login to the cluster
/// the script set up, and Debian's docker-registry (the binary the release ships) serving TLS
/// with the script's certificate and configuration, its blobs on the Ceph S3 server.
/// </summary>
[TestClass]
public sealed class ReferenceNodeTests
{
    private const string Password = "ref-s3cret'\"$HOME`x`";
    private const string PgBin = "/usr/lib/postgresql/15/bin";

    public TestContext TestContext { get; set; } = null!;

    private sealed class Node : IDisposable
    {
        public string Root { get; }
        public string Stubs { get; }
        public string Release { get; }
        public string PasswordFile { get; }
        public int Port { get; } = LoopbackHttpServer.FreePort();
        public string DnfLog => Path.Combine(Stubs, "dnf.log");
        public string SystemctlLog => Path.Combine(Stubs, "systemctl.log");
        public string PgData => Path.Combine(Root, "var", "lib", "pgsql", "data");
        public string RegistryDirectory => Path.Combine(Root, "etc", "docker-registry");

        public Node()
        {
            Root = Directory.CreateTempSubdirectory("rdr-refnode-").FullName;
            // The postgres user must reach the data directory below it.
            File.SetUnixFileMode(Root, (UnixFileMode)0b111_101_101);
            Stubs = Directory.CreateDirectory(Path.Combine(Root, "stubs")).FullName;
            Release = Directory.CreateDirectory(Path.Combine(Root, "release", "registry")).Parent!.FullName;
            File.Copy(DockerRegistryProcess.RegistryPath, Path.Combine(Release, "registry", "docker-registry"));
            File.SetUnixFileMode(Path.Combine(Release, "registry", "docker-registry"), (UnixFileMode)0b111_101_101);
            PasswordFile = Path.Combine(Root, "db-password");
            File.WriteAllText(PasswordFile, Password + "\n");
            File.SetUnixFileMode(PasswordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);

            // AL2023's package names, mapped onto the Debian packages that provide the same programs.
            DeploymentTestSupport.WriteExecutable(Path.Combine(Stubs, "dnf"), $$"""
                #!/bin/bash
                printf '%s\n' "$*" >> '{{DnfLog}}'
                [[ "$1" == install ]] || { echo "stub dnf: only install" >&2; exit 1; }
                shift
                for package in "$@"; do
                  case "$package" in
                    -y|-q) continue ;;
                    postgresql15-server) debian=postgresql-15 ;;
                    postgresql15) debian=postgresql-client-15 ;;
                    openssl) debian=openssl ;;
                    *) echo "Error: Unable to find a match: $package" >&2; exit 1 ;;
                  esac
                  dpkg-query -W -f='${Status}' "$debian" | grep -q 'install ok installed' || { echo "stub dnf: $debian is not installed" >&2; exit 1; }
                done
                """);
            // AL2023's postgresql-setup --initdb: a cluster in /var/lib/pgsql/data, peer/ident auth.
            DeploymentTestSupport.WriteExecutable(Path.Combine(Stubs, "postgresql-setup"), $$"""
                #!/bin/bash
                set -e
                [[ "$1" == --initdb ]] || exit 1
                install -d -o postgres -g postgres -m 0700 '{{PgData}}'
                runuser -u postgres -- {{PgBin}}/initdb -D '{{PgData}}' -U postgres --auth-local=peer --auth-host=ident >/dev/null
                """);
            // systemctl for the two units the script manages; pg_ctl stands in for postgresql.service.
            DeploymentTestSupport.WriteExecutable(Path.Combine(Stubs, "systemctl"), $$"""
                #!/bin/bash
                set -e
                printf '%s\n' "$*" >> '{{SystemctlLog}}'
                if [[ "$1 $2" == "restart postgresql.service" ]]; then
                  if runuser -u postgres -- {{PgBin}}/pg_ctl -D '{{PgData}}' status >/dev/null 2>&1; then
                    runuser -u postgres -- {{PgBin}}/pg_ctl -D '{{PgData}}' -w -t 60 restart -l '{{PgData}}/server.log' >/dev/null
                  else
                    runuser -u postgres -- {{PgBin}}/pg_ctl -D '{{PgData}}' -w -t 60 start -l '{{PgData}}/server.log' >/dev/null
                  fi
                fi
                """);
        }

        public Dictionary<string, string> Environment() => new()
        {
            ["RDR_ROOT"] = Root,
            ["RDR_DB_PORT"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RDR_DB_NAME"] = "registry",
            ["RDR_DB_USER"] = "postgres",
            ["RDR_PASSWORD_FILE"] = PasswordFile,
            ["RDR_REGION"] = "eu-west-1",
            ["RDR_IMAGE_BUCKET"] = "registry-prod-imagebucket-1a2b3c",
            ["RDR_IMAGE_PREFIX"] = "registry",
            ["RDR_SSE"] = "S3",
            ["RDR_RELEASE_DIR"] = Release,
            ["RDR_REGISTRY_HOSTNAMES"] = "registry.example.internal,",
            ["PATH"] = $"{Stubs}:/usr/sbin:/usr/bin:/sbin:/bin",
        };

        public void Dispose()
        {
            if (File.Exists(Path.Combine(PgData, "postmaster.pid")))
            {
                using var stop = Process.Start(new ProcessStartInfo("runuser", ["-u", "postgres", "--", $"{PgBin}/pg_ctl", "-D", PgData, "-m", "immediate", "-w", "stop"]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
                stop.WaitForExit(60_000);
            }
            Directory.Delete(Root, recursive: true);
        }
    }

    private Task<ScriptRun> SetUpAsync(Node node) =>
        DeploymentTestSupport.RunAsync("bash", [Path.Combine(DeploymentTestSupport.BootstrapDirectory, "reference-node.sh")], node.Environment(),
            TimeSpan.FromMinutes(3), TestContext.CancellationToken);

    private static string Scalar(YamlNode root, params string[] path)
    {
        var node = root;
        foreach (var key in path) node = ((YamlMappingNode)node).Children[new YamlScalarNode(key)];
        return ((YamlScalarNode)node).Value!;
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AStockNodeGetsPostgres15WithThePasswordAndARegistryThatServesTls()
    {
        Assert.IsTrue(File.Exists($"{PgBin}/initdb"), "PostgreSQL 15 is not installed: run scripts/install-prerequisites.sh");
        using var node = new Node();

        var run = await SetUpAsync(node);

        Assert.AreEqual(0, run.ExitCode, run.ToString());
        Assert.DoesNotContain("ref-s3cret", run.Output, "the password must not be printed");
        CollectionAssert.AreEqual(new[] { "install -y -q postgresql15-server postgresql15 openssl" }, File.ReadAllLines(node.DnfLog));
        CollectionAssert.AreEqual(new[] { "enable postgresql.service", "restart postgresql.service", "daemon-reload", "enable docker-registry.service" },
            File.ReadAllLines(node.SystemctlLog), "the registry is enabled, not started: registry-dr starts it after the restore");

        // registry-dr's view: password login over loopback TCP, the database exists; a wrong password is refused.
        var builder = new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = node.Port, Username = "postgres", Password = Password, Database = "registry", Pooling = false };
        await using (var connection = new NpgsqlConnection(builder.ConnectionString))
        {
            await connection.OpenAsync(TestContext.CancellationToken);
            await using var command = new NpgsqlCommand("SELECT current_database() || ' ' || split_part(current_setting('server_version'), '.', 1) || ' ' || current_setting('listen_addresses')", connection);
            Assert.AreEqual("registry 15 127.0.0.1", (string?)await command.ExecuteScalarAsync(TestContext.CancellationToken));
        }
        builder.Password = "wrong";
        var refused = await Assert.ThrowsAsync<PostgresException>(async () =>
        {
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(TestContext.CancellationToken);
        });
        Assert.AreEqual("28P01", refused.SqlState, "password authentication failed");
        foreach (var file in new[] { "pg_hba.conf", "registry-dr.conf" })
            Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(node.PgData, file)), file);

        // The registry's configuration, read as YAML.
        var yaml = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(node.RegistryDirectory, "config.yml"))) yaml.Load(reader);
        var config = yaml.Documents[0].RootNode;
        Assert.AreEqual(("eu-west-1", "registry-prod-imagebucket-1a2b3c", "/registry", "true"),
            (Scalar(config, "storage", "s3", "region"), Scalar(config, "storage", "s3", "bucket"), Scalar(config, "storage", "s3", "rootdirectory"), Scalar(config, "storage", "s3", "encrypt")));
        Assert.AreEqual((":443", "/etc/docker-registry/tls/registry.crt", "/etc/docker-registry/tls/registry.key", "127.0.0.1:5001"),
            (Scalar(config, "http", "addr"), Scalar(config, "http", "tls", "certificate"), Scalar(config, "http", "tls", "key"), Scalar(config, "http", "debug", "addr")));
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(node.RegistryDirectory, "tls", "registry.key")));
        StringAssert.Contains(File.ReadAllText(Path.Combine(node.Root, "etc", "systemd", "system", "docker-registry.service")),
            "\nExecStart=/usr/local/bin/docker-registry serve /etc/docker-registry/config.yml\n");
        using var certificate = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(node.RegistryDirectory, "tls", "registry.crt"));
        var san = certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        CollectionAssert.AreEqual(new[] { "localhost", "registry.example.internal" }, san.EnumerateDnsNames().ToList());
        CollectionAssert.AreEqual(new[] { IPAddress.Loopback }, san.EnumerateIPAddresses().ToList());

        // The installed registry binary with that configuration and certificate, for real: TLS on
        // its port, /debug/health where Registry:HealthUrl points, blobs on the S3 server (its
        // endpoint and keys as environment overrides; Ceph has no SSE-S3, so encrypt is off here).
        var s3 = await TestEnvironment.S3Async();
        await s3.CreateBucketAsync("registry-prod-imagebucket-1a2b3c", TestContext.CancellationToken);
        int httpsPort = LoopbackHttpServer.FreePort(), debugPort = LoopbackHttpServer.FreePort();
        var start = new ProcessStartInfo(Path.Combine(node.Root, "usr", "local", "bin", "docker-registry"), ["serve", Path.Combine(node.RegistryDirectory, "config.yml")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("AWS_", StringComparison.Ordinal) || k.StartsWith("REGISTRY_", StringComparison.Ordinal)).ToList()) start.Environment.Remove(key);
        start.Environment["REGISTRY_HTTP_ADDR"] = $"127.0.0.1:{httpsPort}";
        start.Environment["REGISTRY_HTTP_DEBUG_ADDR"] = $"127.0.0.1:{debugPort}";
        start.Environment["REGISTRY_HTTP_TLS_CERTIFICATE"] = Path.Combine(node.RegistryDirectory, "tls", "registry.crt");
        start.Environment["REGISTRY_HTTP_TLS_KEY"] = Path.Combine(node.RegistryDirectory, "tls", "registry.key");
        start.Environment["REGISTRY_STORAGE_S3_REGIONENDPOINT"] = s3.Endpoint;
        start.Environment["REGISTRY_STORAGE_S3_REGION"] = s3.Region;
        start.Environment["REGISTRY_STORAGE_S3_SECURE"] = "false";
        start.Environment["REGISTRY_STORAGE_S3_ENCRYPT"] = "false";
        start.Environment["REGISTRY_STORAGE_S3_ACCESSKEY"] = s3.AccessKey;
        start.Environment["REGISTRY_STORAGE_S3_SECRETKEY"] = s3.SecretKey;
        using var registry = Process.Start(start)!;
        var registryOutput = new System.Text.StringBuilder();
        registry.OutputDataReceived += (_, e) => { lock (registryOutput) registryOutput.AppendLine(e.Data); };
        registry.ErrorDataReceived += (_, e) => { lock (registryOutput) registryOutput.AppendLine(e.Data); };
        registry.BeginOutputReadLine();
        registry.BeginErrorReadLine();
        try
        {
            using var handler = new HttpClientHandler
            {
                // Trust exactly the certificate the script made.
                ServerCertificateCustomValidationCallback = (_, presented, _, _) => presented?.Thumbprint == certificate.Thumbprint,
            };
            using var https = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
            HttpResponseMessage? health = null;
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(TestContext.CancellationToken);
            limit.CancelAfter(TimeSpan.FromSeconds(60));
            while (health is not { StatusCode: HttpStatusCode.OK })
            {
                Assert.IsFalse(registry.HasExited, $"the registry exited: {registryOutput}");
                try
                {
                    health = await https.GetAsync($"http://127.0.0.1:{debugPort}/debug/health", limit.Token);
                }
                catch (HttpRequestException) { }
                catch (OperationCanceledException) when (limit.IsCancellationRequested)
                {
                    Assert.Fail($"the registry did not answer /debug/health with 200 within 60 s; last: {health?.StatusCode}; output: {registryOutput}");
                }
                if (health is not { StatusCode: HttpStatusCode.OK }) await Task.Delay(200, limit.Token);
            }
            using var v2 = await https.GetAsync($"https://localhost:{httpsPort}/v2/", TestContext.CancellationToken);
            Assert.AreEqual(HttpStatusCode.OK, v2.StatusCode, registryOutput.ToString());
            Assert.AreEqual("registry/2.0", v2.Headers.GetValues("Docker-Distribution-Api-Version").Single());
        }
        finally
        {
            registry.Kill();
            await registry.WaitForExitAsync(TestContext.CancellationToken);
        }

        // Run again (a reboot, a re-run of the user data): nothing is initialised or regenerated.
        var certificateBytes = File.ReadAllBytes(Path.Combine(node.RegistryDirectory, "tls", "registry.crt"));
        var again = await SetUpAsync(node);
        Assert.AreEqual(0, again.ExitCode, again.ToString());
        StringAssert.Contains(again.Output, "the cluster in /var/lib/pgsql/data already exists (15)");
        Assert.DoesNotContain("making a self-signed one", again.Output);
        CollectionAssert.AreEqual(certificateBytes, File.ReadAllBytes(Path.Combine(node.RegistryDirectory, "tls", "registry.crt")));
    }

    private Task<ScriptRun> SetUpAsync(Node node, string? mode, string? archiveTimeoutSeconds = null)
    {
        var environment = node.Environment();
        if (mode is not null) environment["RDR_DATABASE_MODE"] = mode;
        if (archiveTimeoutSeconds is not null) environment["RDR_ARCHIVE_TIMEOUT_SECONDS"] = archiveTimeoutSeconds;
        return DeploymentTestSupport.RunAsync("bash", [Path.Combine(DeploymentTestSupport.BootstrapDirectory, "reference-node.sh")], environment,
            TimeSpan.FromMinutes(3), TestContext.CancellationToken);
    }

    /// <summary>SHOW of each archiving setting, and the rules the server loaded from pg_hba.conf.</summary>
    private async Task<(string Settings, string[] HbaRules)> ServerStateAsync(Node node)
    {
        var builder = new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = node.Port, Username = "postgres", Password = Password, Database = "registry", Pooling = false };
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync(TestContext.CancellationToken);
        await using var settings = new NpgsqlCommand(
            "SELECT current_setting('wal_level') || '|' || current_setting('archive_mode') || '|' || current_setting('archive_command') || '|' || current_setting('archive_timeout')", connection);
        var shown = (string)(await settings.ExecuteScalarAsync(TestContext.CancellationToken))!;
        await using var hba = new NpgsqlCommand(
            "SELECT type || ' ' || array_to_string(database, ',') || ' ' || array_to_string(user_name, ',') || ' ' || coalesce(address, '-') || ' ' || auth_method FROM pg_hba_file_rules ORDER BY line_number", connection);
        var rules = new List<string>();
        await using (var reader = await hba.ExecuteReaderAsync(TestContext.CancellationToken))
            while (await reader.ReadAsync(TestContext.CancellationToken)) rules.Add(reader.GetString(0));
        return (shown, [.. rules]);
    }

    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public async Task AContinuousNodeArchivesThroughRegistryDr_AndTakesReplicationConnections_ALogicalOneDoesNeither()
    {
        Assert.IsTrue(File.Exists($"{PgBin}/initdb"), "PostgreSQL 15 is not installed: run scripts/install-prerequisites.sh");
        using var node = new Node();
        string[] logicalRules = ["local all postgres - peer", "local all all - reject", "host all all 127.0.0.1 scram-sha-256"];

        // Logical (the default): archiving stays off, no replication line, the server as before.
        var logical = await SetUpAsync(node, mode: null);
        Assert.AreEqual(0, logical.ExitCode, logical.ToString());
        var before = await ServerStateAsync(node);
        Assert.AreEqual("replica|off|(disabled)|0", before.Settings);
        CollectionAssert.AreEqual(logicalRules, before.HbaRules);
        Assert.AreEqual($"# Written by RegistryDR's reference-node.sh.\nlisten_addresses = '127.0.0.1'\nport = {node.Port}\npassword_encryption = 'scram-sha-256'\n",
            File.ReadAllText(Path.Combine(node.PgData, "registry-dr.conf")));

        // The same node switched to continuous mode: the settings docs/configuration.md requires, live after the restart.
        var continuous = await SetUpAsync(node, "continuous", "45");
        Assert.AreEqual(0, continuous.ExitCode, continuous.ToString());
        StringAssert.Contains(continuous.Output, "continuous mode: wal_level replica, archive_mode on, archive_command registry-dr wal-push, archive_timeout 45s");
        var after = await ServerStateAsync(node);
        Assert.AreEqual("replica|on|/opt/registry-dr/bin/registry-dr wal-push %p|45s", after.Settings);
        CollectionAssert.AreEqual(logicalRules.Append("host replication postgres 127.0.0.1 scram-sha-256").ToArray(), after.HbaRules);
        CollectionAssert.AreEqual(new[] { "install -y -q postgresql15-server postgresql15 openssl", "install -y -q postgresql15-server postgresql15 openssl" }, File.ReadAllLines(node.DnfLog));
        Assert.AreEqual(2, File.ReadAllLines(node.SystemctlLog).Count(l => l == "restart postgresql.service"), "archive_mode needs the restart");

        // pg_basebackup's kind of connection, with the stack's password over loopback: the server's own system identifier answers.
        var builder = new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = node.Port, Username = "postgres", Password = Password, Pooling = false };
        await using (var replication = new Npgsql.Replication.PhysicalReplicationConnection(builder.ConnectionString))
        {
            await replication.Open(TestContext.CancellationToken);
            var system = await replication.IdentifySystem(TestContext.CancellationToken);
            builder.Database = "registry";
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(TestContext.CancellationToken);
            await using var command = new NpgsqlCommand("SELECT system_identifier::text FROM pg_control_system()", connection);
            Assert.AreEqual((string)(await command.ExecuteScalarAsync(TestContext.CancellationToken))!, system.SystemId);
        }

        // Again (a re-run of the user data): the same files, the same settings.
        var conf = File.ReadAllText(Path.Combine(node.PgData, "registry-dr.conf"));
        var hbaText = File.ReadAllText(Path.Combine(node.PgData, "pg_hba.conf"));
        var again = await SetUpAsync(node, "continuous", "45");
        Assert.AreEqual(0, again.ExitCode, again.ToString());
        Assert.AreEqual((conf, hbaText), (File.ReadAllText(Path.Combine(node.PgData, "registry-dr.conf")), File.ReadAllText(Path.Combine(node.PgData, "pg_hba.conf"))));
        var third = await ServerStateAsync(node);
        Assert.AreEqual(after.Settings, third.Settings);
        CollectionAssert.AreEqual(after.HbaRules, third.HbaRules);
        Assert.AreEqual(1, File.ReadAllLines(Path.Combine(node.PgData, "postgresql.conf")).Count(l => l == "include_if_exists = 'registry-dr.conf'"));

        // And back to logical: archiving off again.
        var back = await SetUpAsync(node, "logical");
        Assert.AreEqual(0, back.ExitCode, back.ToString());
        var reverted = await ServerStateAsync(node);
        Assert.AreEqual("replica|off|(disabled)|0", reverted.Settings);
        CollectionAssert.AreEqual(logicalRules, reverted.HbaRules);
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ABadModeOrArchiveTimeoutIsRefusedBeforeInstallingAnything()
    {
        using var node = new Node();
        var badMode = await SetUpAsync(node, "wal");
        var badTimeout = await SetUpAsync(node, "continuous", "60s");

        Assert.AreEqual(1, badMode.ExitCode, badMode.ToString());
        StringAssert.Contains(badMode.Output, "ERROR: RDR_DATABASE_MODE must be logical or continuous, not 'wal'");
        Assert.AreEqual(1, badTimeout.ExitCode, badTimeout.ToString());
        StringAssert.Contains(badTimeout.Output, "ERROR: RDR_ARCHIVE_TIMEOUT_SECONDS must be a whole number of seconds from 1 to 3600, not '60s'");
        Assert.IsFalse(File.Exists(node.DnfLog), "nothing may be installed");
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task ANodeWithoutAPasswordOrWithAnotherUserIsRefusedBeforeInstallingAnything()
    {
        using var node = new Node();
        File.WriteAllText(node.PasswordFile, "");
        var noPassword = await SetUpAsync(node);
        var environment = node.Environment();
        environment["RDR_DB_USER"] = "registry";
        var otherUser = await DeploymentTestSupport.RunAsync("bash", [Path.Combine(DeploymentTestSupport.BootstrapDirectory, "reference-node.sh")], environment,
            TimeSpan.FromMinutes(1), TestContext.CancellationToken);

        Assert.AreEqual(1, noPassword.ExitCode, noPassword.ToString());
        StringAssert.Contains(noPassword.Output, $"ERROR: no database password in {node.PasswordFile} (DatabasePasswordSecretArn or DatabasePassword)");
        Assert.AreEqual(1, otherUser.ExitCode, otherUser.ToString());
        StringAssert.Contains(otherUser.Output, "ERROR: RDR_DB_USER is 'registry': the reference node's registry-dr connects as the superuser postgres (DatabaseUser=postgres)");
        Assert.IsFalse(File.Exists(node.DnfLog), "nothing may be installed");
    }
}
