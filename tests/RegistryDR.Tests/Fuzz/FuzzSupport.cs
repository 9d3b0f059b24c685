using System.Globalization;
using System.Text;

namespace RegistryDR.Tests.Fuzz;

/// <summary>
/// Seeds and case bookkeeping for the generators. Every case gets its own <see cref="Random"/>
/// derived from a fixed base seed and the case number, so one failing case can be rerun alone.
/// </summary>
/// <remarks>
/// Environment knobs, for local hunting only (the suite uses the defaults):
/// REGISTRYDR_FUZZ_CASES multiplies the case counts (e.g. 10 for a long run);
/// REGISTRYDR_FUZZ_CASE runs only the case with that number;
/// REGISTRYDR_FUZZ_SEED replaces every base seed.
/// </remarks>
internal static class Fuzz
{
    public static int Scale =>
        int.TryParse(Environment.GetEnvironmentVariable("REGISTRYDR_FUZZ_CASES"), NumberStyles.None, CultureInfo.InvariantCulture, out var scale) && scale > 0 ? scale : 1;

    public static int? OnlyCase =>
        int.TryParse(Environment.GetEnvironmentVariable("REGISTRYDR_FUZZ_CASE"), NumberStyles.None, CultureInfo.InvariantCulture, out var only) ? only : null;

    public static int BaseSeed(int defaultSeed) =>
        int.TryParse(Environment.GetEnvironmentVariable("REGISTRYDR_FUZZ_SEED"), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var seed) ? seed : defaultSeed;

    /// <summary>The case numbers to run: 0..count-1 (scaled), or just the one asked for.</summary>
    public static IEnumerable<int> Cases(int count) =>
        OnlyCase is { } only ? [only] : Enumerable.Range(0, count * Scale);

    /// <summary>A well-mixed, platform-independent seed for one case (HashCode is randomized per process, so not that).</summary>
    public static int CaseSeed(int baseSeed, int caseNumber)
    {
        unchecked
        {
            var x = ((ulong)(uint)baseSeed << 32) | (uint)caseNumber;
            x ^= x >> 33;
            x *= 0xff51afd7ed558ccdUL;
            x ^= x >> 33;
            x *= 0xc4ceb9fe1a85ec53UL;
            x ^= x >> 33;
            return (int)x;
        }
    }

    public static string Where(int baseSeed, int caseNumber) =>
        $"[seed {baseSeed}, case {caseNumber}; rerun with REGISTRYDR_FUZZ_SEED={baseSeed} REGISTRYDR_FUZZ_CASE={caseNumber}]";

    /// <summary>Keeps a failing input for inspection and returns where it went.</summary>
    public static string Keep(string kind, int baseSeed, int caseNumber, byte[] input)
    {
        try
        {
            var directory = Path.Combine(Path.GetTempPath(), "registrydr-fuzz-failures");
            Directory.CreateDirectory(directory);
            var path = Path.Combine(directory, $"{kind}-seed{baseSeed}-case{caseNumber}.bin");
            File.WriteAllBytes(path, input);
            return path;
        }
        catch (IOException ex)
        {
            return $"(could not be saved: {ex.Message})";
        }
    }

    /// <summary>
    /// Collects failing cases instead of stopping at the first, so one run shows every distinct
    /// problem (grouped by the failure message up to its case details) with the first case of each.
    /// </summary>
    public sealed class Failures
    {
        private readonly Dictionary<string, (int Count, string First)> _byKind = new(StringComparer.Ordinal);

        public void Add(AssertFailedException failure)
        {
            var message = failure.Message;
            var lines = message.Split('\n');
            var headline = lines.FirstOrDefault(l => l.Length > 0 && !l.StartsWith("Assertion failed", StringComparison.Ordinal)) ?? message;
            var cut = headline.IndexOf(" [seed ", StringComparison.Ordinal);
            headline = cut < 0 ? headline : headline[..cut];
            headline = headline.Length > 140 ? headline[..140] : headline;

            // The product frame that threw, if any, so two crashes with the same type stay apart.
            var frame = lines.FirstOrDefault(l => l.TrimStart().StartsWith("at RegistryDR.", StringComparison.Ordinal) && !l.Contains(".Tests.", StringComparison.Ordinal))?.Trim();
            var kind = headline + " " + frame;
            _byKind[kind] = _byKind.TryGetValue(kind, out var seen) ? (seen.Count + 1, seen.First) : (1, message);
        }

        public void AssertNone()
        {
            if (_byKind.Count > 0)
            {
                var total = _byKind.Values.Sum(v => v.Count);
                Assert.Fail($"{total} failing case(s) of {_byKind.Count} kind(s); the first of each:\n\n" + string.Join("\n\n", _byKind.Values.Take(8).Select(v => $"({v.Count}x) {v.First}")));
            }
        }
    }

    public static T Pick<T>(this Random random, IReadOnlyList<T> items) => items[random.Next(items.Count)];

    public static bool Chance(this Random random, double probability) => random.NextDouble() < probability;

    public static string Printable(string text, int max = 160)
    {
        var builder = new StringBuilder();
        foreach (var c in text)
        {
            if (builder.Length >= max)
            {
                builder.Append($"...({text.Length} chars)");
                break;
            }

            builder.Append(char.IsControl(c) || char.IsSurrogate(c) ? $"\\u{(int)c:x4}" : c.ToString());
        }

        return builder.ToString();
    }
}
