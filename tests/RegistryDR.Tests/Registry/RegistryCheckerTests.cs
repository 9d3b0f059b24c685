using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Amazon.S3.Model;
using Microsoft.Extensions.Logging;
using RegistryDR.Registry;
using RegistryDR.Tests.Infrastructure;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Registry;

/// <summary>
/// <c>check-registry</c> against the real Debian docker-registry (distribution 2.8) with its blobs on
/// the Ceph S3 server: images pushed by skopeo in every manifest kind the walker reads (OCI image
/// manifest and index, Docker schema 2 manifest and manifest list), then chosen blobs deleted from
/// the registry's storage, as a replica bucket lacks what replication has not delivered yet. A
/// fresh registry process on that storage is then checked, and the report must name exactly the
/// repositories, tags and digests that were deleted.
/// </summary>
[TestClass]
public sealed class RegistryCheckerTests
{
    private const string Password = "chk-s3cret-'\"$x";
    private static Site? s_site;

    public TestContext TestContext { get; set; } = null!;

    private static Site Broken => s_site ?? throw new InvalidOperationException("the registry was not built");

    /// <summary>What was pushed, what was deleted, and the report the checker must give.</summary>
    private sealed class Site
    {
        public required string Root { get; init; }
        public required string Bucket { get; init; }
        public required DockerRegistryProcess Registry { get; set; }
        public required RegistryCheckReport Intact { get; init; }
        public required IReadOnlyList<RepositoryProblems> Expected { get; init; }
    }

    private static string BlobKey(string digest) => $"registry/docker/registry/v2/blobs/sha256/{digest[7..9]}/{digest[7..]}/data";

    [ClassInitialize]
    public static async Task PushImagesAndDeleteSomeBlobsAsync(TestContext context)
    {
        var s3 = await TestEnvironment.S3Async();
        var bucket = "regdr-check-" + Guid.NewGuid().ToString("N")[..12];
        await s3.CreateBucketAsync(bucket);
        var root = Directory.CreateTempSubdirectory("registrydr-check-").FullName;
        var port = DockerRegistryProcess.FreePort();
        var config = DockerRegistryProcess.WriteConfig(Path.Combine(root, "node-a", "config.yml"), port, s3, bucket);
        var registry = await DockerRegistryProcess.StartAsync(config, port);
        const int LayerBytes = 4_000;
        var layouts = Path.Combine(root, "images");
        var app = OciImages.CreateImageLayout(Path.Combine(layouts, "app"), "1.0", seed: 11, layers: 2, layerBytes: LayerBytes);
        var tools = OciImages.CreateImageLayout(Path.Combine(layouts, "tools"), "2.3", seed: 12, layers: 2, layerBytes: LayerBytes);
        var arch = OciImages.CreateIndexLayout(Path.Combine(layouts, "arch"), "1", [(13, "amd64"), (14, "arm64")], layers: 2, layerBytes: LayerBytes);
        var list = OciImages.CreateIndexLayout(Path.Combine(layouts, "list"), "1", [(15, "amd64"), (16, "arm64")], layers: 2, layerBytes: LayerBytes);
        var gone = OciImages.CreateImageLayout(Path.Combine(layouts, "gone"), "1", seed: 17, layers: 2, layerBytes: LayerBytes);
        var fine = OciImages.CreateImageLayout(Path.Combine(layouts, "fine"), "1", seed: 18, layers: 2, layerBytes: LayerBytes);
        var pushes = new[]
        {
            Skopeo.PushAsync(app, "1.0", registry.HostPort, "team/app"),
            Skopeo.PushAsync(tools, "2.3", registry.HostPort, "infra/tools", ["--format", "v2s2"]),
            Skopeo.PushAsync(arch, "1", registry.HostPort, "multi/arch", ["--all"]),
            Skopeo.PushAsync(list, "1", registry.HostPort, "multi/list", ["--all", "--format", "v2s2"]),
            Skopeo.PushAsync(gone, "1", registry.HostPort, "gone/image"),
            Skopeo.PushAsync(fine, "1", registry.HostPort, "ok/fine"),
        };
        var digests = await Task.WhenAll(pushes);
        // A second tag of the same image: both must be reported, with one missing blob.
        await RetagAsync(registry, "team/app", "1.0", "latest");

        var intact = await CheckAsync(registry.BaseUrl);

        // What goes missing, one of each kind.
        var appManifest = digests[0];
        var appLayer = OciImages.ImageBlobs(app, appManifest).Layers[1];
        var toolsManifest = digests[1];
        var toolsConfig = (await ImageAsync(registry, "infra/tools", toolsManifest)).Config;
        var archIndex = digests[2];
        var archChildren = OciImages.IndexChildren(arch, archIndex);
        var listIndex = digests[3];
        // The manifest list's children were converted to Docker schema 2 by skopeo: ask the registry.
        var listChildren = await ChildrenAsync(registry, "multi/list", listIndex);
        var listLayer = (await ImageAsync(registry, "multi/list", listChildren[0])).Layers[0];
        var goneManifest = digests[4];
        using (var client = s3.CreateClient())
        {
            foreach (var digest in new[] { appLayer, toolsConfig, archChildren[1], listLayer, goneManifest })
                await client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = bucket, Key = BlobKey(digest) });
        }
        await registry.StopAsync();

        // A fresh registry process (nothing cached) on the storage that lacks them.
        var portB = DockerRegistryProcess.FreePort();
        var configB = DockerRegistryProcess.WriteConfig(Path.Combine(root, "node-b", "config.yml"), portB, s3, bucket);
        s_site = new Site
        {
            Root = root,
            Bucket = bucket,
            Registry = await DockerRegistryProcess.StartAsync(configB, portB),
            Intact = intact,
            Expected =
            [
                new RepositoryProblems("gone/image", ["1"], [new UnresolvedTag("1", "404 MANIFEST_UNKNOWN: manifest unknown")], [], []),
                new RepositoryProblems("infra/tools", ["2.3"], [], [],
                    [new MissingBlob(toolsConfig, "config", "HEAD answered 404 Not Found", [toolsManifest], ["2.3"])]),
                new RepositoryProblems("multi/arch", ["1"], [],
                    [new UnresolvedManifest(archChildren[1], "404 MANIFEST_UNKNOWN: manifest unknown", [archIndex], ["1"])], []),
                new RepositoryProblems("multi/list", ["1"], [], [],
                    [new MissingBlob(listLayer, "layer", "HEAD answered 404 Not Found", [listChildren[0]], ["1"])]),
                new RepositoryProblems("team/app", ["1.0", "latest"], [], [],
                    [new MissingBlob(appLayer, "layer", "HEAD answered 404 Not Found", [appManifest], ["1.0", "latest"])]),
            ],
        };
        context.WriteLine($"registry {s_site.Registry}, bucket {bucket}");
    }

    [ClassCleanup]
    public static async Task CleanupAsync()
    {
        if (s_site is null) return;
        await s_site.Registry.DisposeAsync();
        Directory.Delete(s_site.Root, recursive: true);
    }

    private static async Task<RegistryCheckReport> CheckAsync(string url, Action<RegistryCheckOptionsBuilder>? edit = null, ILoggerFactory? loggers = null)
    {
        var builder = new RegistryCheckOptionsBuilder { RegistryUrl = new Uri(url) };
        edit?.Invoke(builder);
        using var owned = loggers is null ? LoggerFactory.Create(_ => { }) : null;
        return await new RegistryChecker(builder.Build(), (loggers ?? owned!).CreateLogger<RegistryChecker>()).CheckAsync(CancellationToken.None);
    }

    /// <summary>Mutable stand-in for the init-only options, so tests can change one field.</summary>
    private sealed class RegistryCheckOptionsBuilder
    {
        public required Uri RegistryUrl { get; set; }
        public string? CredentialsFile { get; set; }
        public string? CaFile { get; set; }
        public int PageSize { get; set; } = 100;
        public int Concurrency { get; set; } = 4;

        public RegistryCheckOptions Build() => new()
        {
            RegistryUrl = RegistryUrl, CredentialsFile = CredentialsFile, CaFile = CaFile, PageSize = PageSize, Concurrency = Concurrency,
            RequestTimeout = TimeSpan.FromSeconds(60), Timeout = TimeSpan.FromMinutes(5),
        };
    }

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    private static async Task<JsonNode> ManifestAsync(DockerRegistryProcess registry, string repository, string reference)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{registry.BaseUrl}/v2/{repository}/manifests/{reference}");
        request.Headers.TryAddWithoutValidation("Accept", "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json");
        using var response = await Http.SendAsync(request);
        Assert.AreEqual(HttpStatusCode.OK, response.StatusCode, $"{repository}@{reference}");
        return JsonNode.Parse(await response.Content.ReadAsByteArrayAsync())!;
    }

    private static async Task<IReadOnlyList<string>> ChildrenAsync(DockerRegistryProcess registry, string repository, string index) =>
        [.. (await ManifestAsync(registry, repository, index))["manifests"]!.AsArray().Select(m => (string)m!["digest"]!)];

    private static async Task<(string Config, IReadOnlyList<string> Layers)> ImageAsync(DockerRegistryProcess registry, string repository, string digest)
    {
        var manifest = await ManifestAsync(registry, repository, digest);
        return ((string)manifest["config"]!["digest"]!, [.. manifest["layers"]!.AsArray().Select(l => (string)l!["digest"]!)]);
    }

    /// <summary>Tags <paramref name="to"/> as the same manifest as <paramref name="from"/> (PUT of the same bytes, OCI distribution spec "Pushing manifests").</summary>
    private static async Task RetagAsync(DockerRegistryProcess registry, string repository, string from, string to)
    {
        using var get = new HttpRequestMessage(HttpMethod.Get, $"{registry.BaseUrl}/v2/{repository}/manifests/{from}");
        get.Headers.TryAddWithoutValidation("Accept", "application/vnd.oci.image.manifest.v1+json");
        using var response = await Http.SendAsync(get);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        using var put = new HttpRequestMessage(HttpMethod.Put, $"{registry.BaseUrl}/v2/{repository}/manifests/{to}") { Content = new ByteArrayContent(bytes) };
        put.Content.Headers.TryAddWithoutValidation("Content-Type", response.Content.Headers.ContentType!.MediaType);
        using var stored = await Http.SendAsync(put);
        Assert.AreEqual(HttpStatusCode.Created, stored.StatusCode, await stored.Content.ReadAsStringAsync());
    }

    private static void AssertSameProblems(IReadOnlyList<RepositoryProblems> expected, IReadOnlyList<RepositoryProblems> actual)
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web) { WriteIndented = true };
        Assert.AreEqual(JsonSerializer.Serialize(expected, options), JsonSerializer.Serialize(actual, options));
    }

    [TestMethod]
    public void TheIntactRegistryResolvesCompletely()
    {
        var intact = Broken.Intact;
        Assert.IsTrue(intact.AllResolved, string.Join("; ", intact.Errors.Select(e => e.Reason)));
        Assert.AreEqual((6, 7), (intact.Repositories, intact.Tags));
        // team/app 1, infra/tools 1, multi/arch 3, multi/list 3, gone/image 1, ok/fine 1; each image has a config and two layers.
        Assert.AreEqual((10, 24), (intact.Manifests, intact.Blobs));
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task MissingBlobsAreReportedExactly_PerRepositoryTagAndDigest_AcrossCatalogPages()
    {
        // Two repositories per catalog page: six repositories only if the Link chain is followed.
        var report = await CheckAsync(Broken.Registry.BaseUrl, o => o.PageSize = 2);

        Assert.IsTrue(report.Complete, string.Join("; ", report.Errors.Select(e => $"{e.Repository} {e.What}: {e.Reason}")));
        Assert.AreEqual((6, 7), (report.Repositories, report.Tags));
        // The missing child and tag manifest are not counted as checked blobs; gone/image's manifest is not fetched at all.
        Assert.AreEqual((9, 18), (report.Manifests, report.Blobs));
        AssertSameProblems(Broken.Expected, report.Problems);
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task TheCommandExitsSeven_AndItsJsonAndTextNameTheSameProblems()
    {
        var text = await RunCliAsync("check-registry", Broken.Registry.BaseUrl, "--page-size", "3");
        var json = await RunCliAsync("check-registry", Broken.Registry.BaseUrl, "--json", "--concurrency", "2");

        Assert.AreEqual(7, text.ExitCode, text.ToString());
        Assert.AreEqual(7, json.ExitCode, json.ToString());
        var parsed = JsonSerializer.Deserialize<RegistryCheckReport>(json.Stdout, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
        AssertSameProblems(Broken.Expected, parsed.Problems);
        var expected = Broken.Expected;
        StringAssert.StartsWith(text.Stdout, $"Registry {Broken.Registry.BaseUrl}: 6 repositories, 7 tags, 9 manifests and 18 blobs checked in ");
        StringAssert.Contains(text.Stdout, "MISSING in 5 of 6 repositories (6 tags cannot be pulled):\n");
        StringAssert.Contains(text.Stdout, "team/app: tags that cannot be pulled: 1.0, latest\n");
        StringAssert.Contains(text.Stdout, $"  layer blob {expected[4].MissingBlobs[0].Digest} is missing (HEAD answered 404 Not Found); named by manifest {expected[4].MissingBlobs[0].ReferencedBy[0]}; tags 1.0, latest\n");
        StringAssert.Contains(text.Stdout, "  tag 1 does not resolve: 404 MANIFEST_UNKNOWN: manifest unknown\n");
        StringAssert.Contains(text.Stdout, $"  manifest {expected[2].UnresolvedManifests[0].Digest} does not resolve (404 MANIFEST_UNKNOWN: manifest unknown); named by {expected[2].UnresolvedManifests[0].ReferencedBy[0]}; tags 1\n");
        Assert.DoesNotContain("ok/fine", text.Stdout);
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task BasicAuthOverTls_NeedsTheCredentialsFileAndTheCa_AndNeverShowsThePassword()
    {
        var site = Broken;
        using var pki = TestPki.Create(Path.Combine(site.Root, "pki-basic"));
        var htpasswd = Path.Combine(pki.Directory, "htpasswd");
        await File.WriteAllTextAsync(htpasswd, "tester:" + await BcryptAsync(Password) + "\n");
        await using var registry = await StartSecuredRegistryAsync(site, pki, $"""
            auth:
              htpasswd:
                realm: registrydr-test
                path: {htpasswd}
            """);
        var url = $"https://127.0.0.1:{registry.Port}";
        var good = WriteAuthFile(pki.Directory, "good.json", $"127.0.0.1:{registry.Port}", "tester", Password);
        var wrong = WriteAuthFile(pki.Directory, "wrong.json", $"https://127.0.0.1:{registry.Port}/v1/", "tester", "not-it");
        var elsewhere = WriteAuthFile(pki.Directory, "elsewhere.json", "registry.example.com", "tester", Password);
        var logs = new ListLoggerProvider();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));

        var anonymous = await Assert.ThrowsAsync<RegistryUnavailableException>(() => CheckAsync(url, o => o.CaFile = pki.CaFile, loggers));
        var refused = await Assert.ThrowsAsync<RegistryUnavailableException>(() => CheckAsync(url, o => { o.CaFile = pki.CaFile; o.CredentialsFile = wrong; }, loggers));
        var noEntry = await Assert.ThrowsAsync<RegistryCheckConfigurationException>(() => CheckAsync(url, o => { o.CaFile = pki.CaFile; o.CredentialsFile = elsewhere; }, loggers));
        var untrusted = await Assert.ThrowsAsync<RegistryUnavailableException>(() => CheckAsync(url, o => o.CredentialsFile = good, loggers));
        var report = await CheckAsync(url, o => { o.CaFile = pki.CaFile; o.CredentialsFile = good; }, loggers);

        Assert.AreEqual($"{url}/v2/ answered 401 Unauthorized (HTTP basic authentication): the registry needs credentials; give them with --credentials-file.", anonymous.Message);
        Assert.AreEqual($"{url}/v2/ answered 401 Unauthorized with the credentials from {wrong}, entry \"https://127.0.0.1:{registry.Port}/v1/\": the registry refuses them.", refused.Message);
        Assert.AreEqual($"The credentials file {elsewhere} has no entry for 127.0.0.1:{registry.Port} (its entries: \"registry.example.com\").", noEntry.Message);
        StringAssert.StartsWith(untrusted.Message, $"The registry does not answer: GET {url}/v2/ failed: ");
        Assert.IsTrue(report.Complete, string.Join("; ", report.Errors.Select(e => e.Reason)));
        AssertSameProblems(site.Expected, report.Problems);
        foreach (var text in new[] { anonymous.Message, refused.Message, noEntry.Message, untrusted.Message, logs.Text })
        {
            Assert.DoesNotContain(Password, text);
            Assert.DoesNotContain(Convert.ToBase64String(Encoding.UTF8.GetBytes("tester:" + Password)), text);
        }
        StringAssert.Contains(logs.Text, $"Checking the registry {url}/ (credentials from {good}, entry \"127.0.0.1:{registry.Port}\")");
    }

    [TestMethod]
    [Timeout(300_000, CooperativeCancellation = true)]
    public async Task TheBearerTokenFlow_GetsOneTokenPerScope_WithTheCredentials()
    {
        var site = Broken;
        using var pki = TestPki.Create(Path.Combine(site.Root, "pki-token"));
        await using var tokens = TokenService.Start(pki, "tester", Password);
        var tokenAuth = $"""
            auth:
              token:
                realm: {tokens.Realm}
                service: registrydr-test
                issuer: {TokenService.Issuer}
                rootcertbundle: {pki.TokenCertificateFile}
            """;
        // A TLS registry whose token service is plain HTTP: the credentials are not sent there.
        RegistryUnavailableException clearText;
        await using (var tls = await StartSecuredRegistryAsync(site, pki, tokenAuth))
        {
            var tlsUrl = $"https://127.0.0.1:{tls.Port}";
            var tlsAuth = WriteAuthFile(pki.Directory, "tls.json", $"127.0.0.1:{tls.Port}", "tester", Password);
            clearText = await Assert.ThrowsAsync<RegistryUnavailableException>(() => CheckAsync(tlsUrl, o => { o.CaFile = pki.CaFile; o.CredentialsFile = tlsAuth; }));
            Assert.AreEqual($"{tlsUrl}/v2/ sends token requests to {tokens.Realm}, which is not https: the credentials are not sent there.", clearText.Message);
            Assert.IsEmpty(tokens.GrantedScopes.ToList());
        }
        await using var registry = await StartSecuredRegistryAsync(site, pki, tokenAuth, tls: false);
        var url = $"http://127.0.0.1:{registry.Port}";
        var good = WriteAuthFile(pki.Directory, "good.json", $"127.0.0.1:{registry.Port}", "tester", Password);

        var anonymous = await Assert.ThrowsAsync<RegistryUnavailableException>(() => CheckAsync(url));
        var report = await CheckAsync(url, o => { o.CredentialsFile = good; o.PageSize = 4; });

        Assert.AreEqual("The token service http://127.0.0.1:" + tokens.Port + "/token answered 401 Unauthorized for GET /v2/ (no scope) (no credentials were given; --credentials-file).", anonymous.Message);
        Assert.IsTrue(report.Complete, string.Join("; ", report.Errors.Select(e => e.Reason)));
        AssertSameProblems(site.Expected, report.Problems);
        // One token for the ping, one for the catalog, one per repository: cached, not one per request.
        CollectionAssert.AreEquivalent(
            new[] { "", "registry:catalog:*", "repository:gone/image:pull", "repository:infra/tools:pull", "repository:multi/arch:pull",
                    "repository:multi/list:pull", "repository:ok/fine:pull", "repository:team/app:pull" },
            tokens.GrantedScopes.ToList());
    }

    /// <summary>The broken site's storage behind TLS and <paramref name="authYaml"/>: the same images, now needing credentials.</summary>
    private static async Task<DockerRegistryProcess> StartSecuredRegistryAsync(Site site, TestPki pki, string authYaml, bool tls = true)
    {
        var s3 = await TestEnvironment.S3Async();
        var port = DockerRegistryProcess.FreePort();
        var config = DockerRegistryProcess.WriteConfig(Path.Combine(pki.Directory, $"config-{port}.yml"), port, s3, site.Bucket);
        var yaml = await File.ReadAllTextAsync(config);
        if (tls) yaml = yaml.Replace("\nhttp:\n", $"\nhttp:\n  tls:\n    certificate: {pki.ServerCertificateFile}\n    key: {pki.ServerKeyFile}\n", StringComparison.Ordinal);
        await File.WriteAllTextAsync(config, yaml + authYaml.ReplaceLineEndings("\n") + "\n");
        var registry = DockerRegistryProcess.Start(config, port);
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, cert, _, _) => cert?.Thumbprint == pki.ServerThumbprint };
        using var https = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(5) };
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var response = await https.GetAsync($"{(tls ? "https" : "http")}://127.0.0.1:{port}/v2/");
                if (response.StatusCode == HttpStatusCode.Unauthorized) return registry;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
            }
            if (registry.HasExited || watch.Elapsed > TimeSpan.FromSeconds(60))
            {
                var tail = registry.LogTail();
                await registry.DisposeAsync();
                Assert.Fail($"the secured registry did not answer 401 on /v2/ within 60 s: {tail}");
            }
            await Task.Delay(100);
        }
    }

    private static string WriteAuthFile(string directory, string name, string key, string user, string password)
    {
        var path = Path.Combine(directory, name);
        using (var stream = new FileStream(path, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            stream.Write(Encoding.UTF8.GetBytes(new JsonObject { ["auths"] = new JsonObject { [key] = new JsonObject { ["auth"] = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")) } } }.ToJsonString()));
        return path;
    }

    /// <summary>A bcrypt hash for htpasswd (distribution accepts bcrypt only), made by Debian's python3 crypt (libxcrypt), the password on stdin.</summary>
    private static async Task<string> BcryptAsync(string password)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3", ["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_BLOWFISH)))"])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var process = Process.Start(psi)!;
        await process.StandardInput.WriteAsync(password);
        process.StandardInput.Close();
        var hash = (await process.StandardOutput.ReadToEndAsync()).Trim();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
        Assert.AreEqual(0, process.ExitCode, await process.StandardError.ReadToEndAsync());
        StringAssert.StartsWith(hash, "$2b$");
        return hash;
    }

    private sealed record CliRun(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    private static async Task<CliRun> RunCliAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "registry-dr.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(4));
        return new CliRun(p.ExitCode, await stdout, await stderr);
    }

    private sealed class ListLoggerProvider : ILoggerProvider
    {
        private readonly List<string> _lines = [];

        public string Text { get { lock (_lines) return string.Join('\n', _lines); } }

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void Dispose() { }

        private sealed class Logger(ListLoggerProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner._lines) owner._lines.Add(formatter(state, exception) + (exception is null ? "" : " " + exception));
            }
        }
    }

    /// <summary>A test CA, a server certificate it signs for 127.0.0.1, and a self-signed token-signing certificate, as PEM files.</summary>
    private sealed class TestPki : IDisposable
    {
        public required string Directory { get; init; }
        public required string CaFile { get; init; }
        public required string ServerCertificateFile { get; init; }
        public required string ServerKeyFile { get; init; }
        public required string ServerThumbprint { get; init; }
        public required string TokenCertificateFile { get; init; }
        public required X509Certificate2 TokenCertificate { get; init; }
        public required ECDsa TokenKey { get; init; }

        public static TestPki Create(string directory)
        {
            System.IO.Directory.CreateDirectory(directory);
            var now = DateTimeOffset.UtcNow;
            using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var caRequest = new CertificateRequest("CN=RegistryDR test CA", caKey, HashAlgorithmName.SHA256);
            caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            using var ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(2));
            using var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var serverRequest = new CertificateRequest("CN=127.0.0.1", serverKey, HashAlgorithmName.SHA256);
            var names = new SubjectAlternativeNameBuilder();
            names.AddIpAddress(IPAddress.Loopback);
            serverRequest.CertificateExtensions.Add(names.Build());
            serverRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
            serverRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
            using var server = serverRequest.Create(ca, now.AddHours(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(8));
            var tokenKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var tokenRequest = new CertificateRequest("CN=RegistryDR test token issuer", tokenKey, HashAlgorithmName.SHA256);
            tokenRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            var token = tokenRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(2));
            var pki = new TestPki
            {
                Directory = directory,
                CaFile = Path.Combine(directory, "ca.pem"),
                ServerCertificateFile = Path.Combine(directory, "server.pem"),
                ServerKeyFile = Path.Combine(directory, "server.key"),
                ServerThumbprint = server.Thumbprint,
                TokenCertificateFile = Path.Combine(directory, "token.pem"),
                TokenCertificate = token,
                TokenKey = tokenKey,
            };
            File.WriteAllText(pki.CaFile, ca.ExportCertificatePem() + "\n");
            File.WriteAllText(pki.ServerCertificateFile, server.ExportCertificatePem() + "\n");
            File.WriteAllText(pki.ServerKeyFile, serverKey.ExportPkcs8PrivateKeyPem() + "\n");
            File.SetUnixFileMode(pki.ServerKeyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            File.WriteAllText(pki.TokenCertificateFile, token.ExportCertificatePem() + "\n");
            return pki;
        }

        public void Dispose()
        {
            TokenCertificate.Dispose();
            TokenKey.Dispose();
        }
    }

    /// <summary>
    /// A token service as the Docker registry token specification describes it: GET with
    /// <c>service</c> and <c>scope</c>, HTTP basic credentials checked, a JWT (ES256, the signing
    /// certificate in <c>x5c</c>) granting exactly the scope asked for.
    /// </summary>
    private sealed class TokenService : IAsyncDisposable
    {
        public const string Issuer = "registrydr-test-issuer";
        private readonly LoopbackHttpServer _server;
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _granted = new();

        private TokenService(TestPki pki, string user, string password)
        {
            var expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"));
            _server = LoopbackHttpServer.Start(async context =>
            {
                if (context.Request.Headers["Authorization"] != expected)
                {
                    context.Response.StatusCode = 401;
                    context.Response.Close();
                    return;
                }
                var scope = context.Request.QueryString["scope"] ?? "";
                _granted.Enqueue(scope);
                var body = Encoding.UTF8.GetBytes(new JsonObject { ["token"] = Sign(pki, context.Request.QueryString["service"]!, scope), ["expires_in"] = 300 }.ToJsonString());
                context.Response.ContentType = "application/json";
                await context.Response.OutputStream.WriteAsync(body);
                context.Response.Close();
            });
        }

        public int Port => _server.Port;

        public string Realm => $"{_server.Endpoint}/token";

        public IEnumerable<string> GrantedScopes => _granted;

        public static TokenService Start(TestPki pki, string user, string password) => new(pki, user, password);

        private static string Sign(TestPki pki, string service, string scope)
        {
            static string B64(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
            var access = new JsonArray();
            if (scope.Length > 0)
            {
                var parts = scope.Split(':');
                access.Add(new JsonObject { ["type"] = parts[0], ["name"] = string.Join(':', parts[1..^1]), ["actions"] = new JsonArray([.. parts[^1].Split(',').Select(a => (JsonNode)a)]) });
            }
            var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            var header = new JsonObject { ["typ"] = "JWT", ["alg"] = "ES256", ["x5c"] = new JsonArray(Convert.ToBase64String(pki.TokenCertificate.RawData)) };
            var claims = new JsonObject
            {
                ["iss"] = Issuer, ["sub"] = "tester", ["aud"] = service, ["exp"] = now + 300, ["nbf"] = now - 60, ["iat"] = now,
                ["jti"] = Guid.NewGuid().ToString("N"), ["access"] = access,
            };
            var signed = B64(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + B64(Encoding.UTF8.GetBytes(claims.ToJsonString()));
            return signed + "." + B64(pki.TokenKey.SignData(Encoding.ASCII.GetBytes(signed), HashAlgorithmName.SHA256));
        }

        public ValueTask DisposeAsync() => _server.DisposeAsync();
    }
}
