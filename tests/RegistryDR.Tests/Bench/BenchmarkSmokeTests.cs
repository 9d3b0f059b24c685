using System.Globalization;
using RegistryDR.Processes;
using RegistryDR.Tests.Deployment;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Bench;

/// <summary>
/// The benchmark is not a timed test: this runs <c>bench/run.sh</c> once at its smallest size to
/// prove that all three approaches still back up and restore (the script checks every restore's
/// row count) and that it prints its table. No figure is compared with anything here; the
/// figures come from the full runs in docs/performance.md.
/// </summary>
[TestClass]
public sealed class BenchmarkSmokeTests
{
    [TestMethod]
    [Timeout(20 * 60 * 1000, CooperativeCancellation = true)]
    public async Task BenchRunsAtATinySize_AndPrintsOneRowPerApproach()
    {
        using var results = new TempDirectory("rdr-bench-");
        var script = Path.Combine(DeploymentTestSupport.RepoRoot, "bench", "run.sh");
        var output = new System.Text.StringBuilder();
        var result = await ProcessRunner.RunAsync(new ProcessSpec("/bin/bash", [script, "--size-mb", "10", "--results-dir", results.Path]),
            readStdout: async (stdout, ct) =>
            {
                using var reader = new StreamReader(stdout, leaveOpen: true);
                output.Append(await reader.ReadToEndAsync(ct));
            });
        Assert.AreEqual(0, result.ExitCode, $"bench/run.sh failed:{ProcessRunner.FormatTail(result.StandardError)}");

        var table = output.ToString().Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal)).ToList();
        var written = Directory.GetFiles(results.Path, "*-10mb.md");
        Assert.HasCount(1, written);
        StringAssert.Contains(File.ReadAllText(written[0]), table[0]);

        foreach (var approach in new[] { "a. pg_dump", "b. pgBackRest", "c. registry-dr" })
        {
            var row = table.SingleOrDefault(l => l.StartsWith("| " + approach, StringComparison.Ordinal));
            Assert.IsNotNull(row, $"no row for {approach}:\n{output}");
            var cells = Cells(row);
            Assert.HasCount(8, cells, row);
            // wall, CPU, RSS for backup and restore are numbers; RSS and wall time are never zero.
            foreach (var i in new[] { 1, 2, 3, 4, 5, 6 })
                Assert.IsTrue(double.TryParse(cells[i], NumberStyles.Float, CultureInfo.InvariantCulture, out _), $"{approach}: column {i} is '{cells[i]}'");
            Assert.IsGreaterThan(0.0, double.Parse(cells[1], CultureInfo.InvariantCulture), row);
            Assert.IsGreaterThan(0.0, double.Parse(cells[3], CultureInfo.InvariantCulture), row);
            StringAssert.EndsWith(cells[7], " MiB", row);
        }
        foreach (var ratio in new[] { "ratio c/a", "ratio c/b" })
            Assert.IsTrue(table.Any(l => l.StartsWith("| " + ratio, StringComparison.Ordinal) && !l.Contains("n/a", StringComparison.Ordinal)), $"no {ratio} row:\n{output}");
    }

    private static List<string> Cells(string row) =>
        row.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToList();
}
