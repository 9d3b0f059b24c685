using System.Text.Json;

namespace RegistryDR.Tests.Monitoring;

/// <summary>
/// Checks a line against the CloudWatch embedded metric format specification: the line is one
/// JSON object and nothing else; <c>_aws.Timestamp</c> is an integer number of milliseconds;
/// every MetricDirective has a Namespace, a non-empty array of dimension sets (each at most 30
/// keys, each key a top-level string member of at most 1024 characters) and at most 100
/// metrics, each named metric a top-level number, each unit one CloudWatch knows.
/// </summary>
internal static class EmfAssert
{
    private static readonly HashSet<string> Units =
    [
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
        "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second",
        "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
        "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    ];

    /// <summary>Parses and checks one line; returns the root for further assertions.</summary>
    public static JsonElement Valid(string line, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        Assert.IsFalse(line.Contains('\n'), "one event per line");
        using var document = JsonDocument.Parse(line); // throws on trailing data too
        var root = document.RootElement.Clone();
        Assert.AreEqual(JsonValueKind.Object, root.ValueKind, line);

        var aws = root.GetProperty("_aws");
        Assert.AreEqual(JsonValueKind.Object, aws.ValueKind);
        var timestamp = aws.GetProperty("Timestamp");
        Assert.IsTrue(timestamp.TryGetInt64(out var ms), $"_aws.Timestamp must be an integer: {timestamp}");
        Assert.IsTrue(ms >= notBefore.ToUnixTimeMilliseconds() && ms <= notAfter.ToUnixTimeMilliseconds(),
            $"_aws.Timestamp {ms} is not milliseconds between {notBefore:O} and {notAfter:O}");

        var directives = aws.GetProperty("CloudWatchMetrics");
        Assert.AreEqual(JsonValueKind.Array, directives.ValueKind);
        Assert.IsGreaterThan(0, directives.GetArrayLength());
        foreach (var directive in directives.EnumerateArray())
        {
            var ns = directive.GetProperty("Namespace").GetString();
            Assert.IsFalse(string.IsNullOrEmpty(ns));
            var dimensionSets = directive.GetProperty("Dimensions");
            Assert.IsGreaterThan(0, dimensionSets.GetArrayLength(), "Dimensions needs at least one dimension set");
            foreach (var set in dimensionSets.EnumerateArray())
            {
                Assert.AreEqual(JsonValueKind.Array, set.ValueKind);
                Assert.IsLessThanOrEqualTo(30, set.GetArrayLength());
                foreach (var key in set.EnumerateArray())
                {
                    var name = key.GetString()!;
                    Assert.IsTrue(root.TryGetProperty(name, out var target), $"dimension '{name}' is not a top-level member");
                    Assert.AreEqual(JsonValueKind.String, target.ValueKind, $"dimension '{name}' must be a string");
                    Assert.IsLessThanOrEqualTo(1024, target.GetString()!.Length);
                }
            }
            var metrics = directive.GetProperty("Metrics");
            Assert.IsLessThanOrEqualTo(100, metrics.GetArrayLength());
            foreach (var metric in metrics.EnumerateArray())
            {
                var name = metric.GetProperty("Name").GetString()!;
                Assert.IsTrue(root.TryGetProperty(name, out var value), $"metric '{name}' is not a top-level member");
                Assert.AreEqual(JsonValueKind.Number, value.ValueKind, $"metric '{name}' must be a number");
                if (metric.TryGetProperty("Unit", out var unit))
                    Assert.Contains(unit.GetString()!, Units, $"metric '{name}' has unit '{unit}' that CloudWatch does not know");
            }
        }
        return root;
    }

    /// <summary>The metric names one line declares, in order.</summary>
    public static IReadOnlyList<string> MetricNames(JsonElement root) =>
        root.GetProperty("_aws").GetProperty("CloudWatchMetrics").EnumerateArray()
            .SelectMany(d => d.GetProperty("Metrics").EnumerateArray().Select(m => m.GetProperty("Name").GetString()!)).ToList();

    public static IReadOnlyList<IReadOnlyList<string>> DimensionSets(JsonElement root) =>
        root.GetProperty("_aws").GetProperty("CloudWatchMetrics")[0].GetProperty("Dimensions").EnumerateArray()
            .Select(set => (IReadOnlyList<string>)set.EnumerateArray().Select(k => k.GetString()!).ToList()).ToList();
}
