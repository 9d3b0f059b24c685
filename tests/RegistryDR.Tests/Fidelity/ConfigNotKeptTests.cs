using RegistryDR.Backup;
using RegistryDR.Restore;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// What a tar of config directories cannot hold (sockets, FIFOs) is said once per kind at backup
/// time, recorded in the set, and listed again by <c>verify</c> and <c>restore --dry-run</c>.
/// </summary>
[TestClass]
public sealed class ConfigNotKeptTests
{
    [TestMethod]
    public async Task SocketsAndFifosAreReportedOncePerKindAndListedByVerifyAndDryRun()
    {
        await using var trip = await ConfigRoundTrip.CreateAsync();
        var data = Shell.Quote(trip.Data);
        Shell.Run($"""
            mkdir -p {data}/run
            python3 -c 'import socket,sys
            for p in sys.argv[1:]: socket.socket(socket.AF_UNIX).bind(p)' {data}/run/a.socket {data}/run/b.socket
            mkfifo {data}/run/events.fifo
            """);

        var manifest = await trip.BackupAsync();

        var warnings = trip.BackupWarnings();
        Assert.HasCount(2, warnings, string.Join("\n", warnings));
        Assert.Contains("Not in the archive, socket (2): ", warnings.Single(w => w.Contains("socket")));
        Assert.Contains($"'{trip.Data}/run/a.socket', '{trip.Data}/run/b.socket'", warnings.Single(w => w.Contains("socket")));
        Assert.AreEqual($"Backup {manifest.BackupId}: Not in the archive, FIFO (1): '{trip.Data}/run/events.fifo'", warnings.Single(w => w.Contains("FIFO")));

        var notKept = manifest.Find(BackupLayout.ConfigArtifact)!.NotKept!;
        CollectionAssert.AreEqual(new[] { "socket 2", "FIFO 1" }, notKept.Select(n => $"{n.Kind} {n.Count}").ToList());
        CollectionAssert.AreEqual(new[] { trip.Data + "/run/a.socket", trip.Data + "/run/b.socket" }, notKept[0].Examples.ToList());

        // Read back from the store, the set still says it.
        var stored = await new BackupCatalog(trip.Node.CreateStore()).ReadManifestAsync(manifest.BackupId, CancellationToken.None);
        var lines = stored.DescribeNotKept();
        CollectionAssert.AreEqual(
            new[] { $"socket (2): '{trip.Data}/run/a.socket', '{trip.Data}/run/b.socket'", $"FIFO (1): '{trip.Data}/run/events.fifo'" },
            lines.ToList());

        var report = await new BackupVerifier(trip.Node.CreateStore(), trip.Node.Options.Database, TestNode.Logger<BackupVerifier>()).VerifyAsync(stored);
        var config = report.Artifacts.Single(a => a.Name == BackupLayout.ConfigArtifact);
        Assert.Contains("not kept: " + string.Join("; ", lines), config.Detail);

        var plan = await new RestoreService(trip.Node.Options, trip.Node.CreateStore(), TestNode.Logger<RestoreService>(), TimeProvider.System)
            .RestoreAsync(new RestoreRequest("latest", true));
        Assert.IsTrue(plan.DryRun);
        Assert.IsTrue(plan.Plan.Steps.Any(s => s.Contains("not kept: " + string.Join("; ", lines), StringComparison.Ordinal)), string.Join("\n", plan.Plan.Steps));
    }
}
