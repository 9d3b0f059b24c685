using Microsoft.Extensions.Configuration;
using RegistryDR.Monitoring;

namespace RegistryDR.Tests.Monitoring;

/// <summary>Monitoring's settings: documented defaults, and every mistake named by its key.</summary>
[TestClass]
public sealed class MonitoringOptionsTests
{
    [TestMethod]
    public void Defaults_ListenOnLoopbackAndWriteTheEmfLog()
    {
        var options = new MonitoringOptions();
        Assert.IsTrue(options.Enabled);
        CollectionAssert.AreEqual(new[] { "http://127.0.0.1:9465" }, options.EffectiveUrls.ToList());
        Assert.AreEqual("/var/log/registry-dr/metrics.emf.log", options.EmfLogPath);
        Assert.AreEqual("RegistryDR", options.EmfNamespace);
        var errors = new List<string>();
        MonitoringOptions.Validate(options, errors);
        Assert.IsEmpty(errors, string.Join("; ", errors));
    }

    [TestMethod]
    public void BoundFromConfiguration_ConfiguredUrlsReplaceTheDefault()
    {
        // As the node's registry-dr.json (and REGISTRYDR__Monitoring__Urls__0) would say it.
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Monitoring:Urls:0"] = "http://127.0.0.1:9465",
            ["Monitoring:Urls:1"] = "http://0.0.0.0:8080",
            ["Monitoring:EmfLogPath"] = "",
        }).Build();
        var options = new MonitoringOptions();
        configuration.GetSection("Monitoring").Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        CollectionAssert.AreEqual(new[] { "http://127.0.0.1:9465", "http://0.0.0.0:8080" }, options.EffectiveUrls.ToList());
        Assert.IsTrue(string.IsNullOrEmpty(options.EmfLogPath), "an empty EmfLogPath disables the EMF log");
        var errors = new List<string>();
        MonitoringOptions.Validate(options, errors);
        Assert.IsEmpty(errors, string.Join("; ", errors));
    }

    [TestMethod]
    public void Validate_NamesEachBadKey()
    {
        var options = new MonitoringOptions
        {
            Urls = ["http://0.0.0.0:8080", "x", "https://127.0.0.1:9465", "http://127.0.0.1:9465/metrics"],
            EmfLogPath = "metrics.emf.log",
            EmfNamespace = "AWS/EC2",
        };
        var errors = new List<string>();
        MonitoringOptions.Validate(options, errors);

        Assert.HasCount(5, errors, string.Join(Environment.NewLine, errors));
        Assert.IsTrue(errors[0].StartsWith("Monitoring:Urls:1 'x' must be an absolute http:// URL", StringComparison.Ordinal), errors[0]);
        Assert.IsTrue(errors[1].StartsWith("Monitoring:Urls:2 'https://127.0.0.1:9465' must be an absolute http:// URL", StringComparison.Ordinal), errors[1]);
        Assert.IsTrue(errors[2].StartsWith("Monitoring:Urls:3 'http://127.0.0.1:9465/metrics' must be just scheme, host and port", StringComparison.Ordinal), errors[2]);
        Assert.IsTrue(errors[3].StartsWith("Monitoring:EmfLogPath 'metrics.emf.log' must be an absolute path", StringComparison.Ordinal), errors[3]);
        Assert.IsTrue(errors[4].StartsWith("Monitoring:EmfNamespace 'AWS/EC2' is not a usable CloudWatch namespace", StringComparison.Ordinal), errors[4]);
    }

    [TestMethod]
    public void Validate_RefusesAnEmptyNamespace()
    {
        var errors = new List<string>();
        MonitoringOptions.Validate(new MonitoringOptions { EmfNamespace = " " }, errors);
        Assert.HasCount(1, errors);
        StringAssert.StartsWith(errors[0], "Monitoring:EmfNamespace must not be empty");
    }
}
