using RegistryDR.Backup;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Hard links come back as links — one inode, the same link count — whether the names share a
/// directory, sit in different subdirectories or in the two config directories; a link whose
/// other name lies outside every config directory cannot be kept, and the set says so.
/// </summary>
[TestClass]
public sealed class ConfigHardLinksTests
{
    [TestMethod]
    public async Task HardLinksAreRestoredAsLinksWithTheirLinkCount()
    {
        await using var trip = await ConfigRoundTrip.CreateAsync();
        var data = Shell.Quote(trip.Data);
        var etc = Shell.Quote(trip.Etc);
        var outside = Shell.Quote(Path.Combine(trip.Node.Root, "outside-name"));
        Shell.Run($"""
            mkdir -p {data}/conf {data}/other/sub
            printf 'certificate\n' > {data}/conf/a.pem
            chmod 640 {data}/conf/a.pem
            ln {data}/conf/a.pem {data}/conf/b.pem
            ln {data}/conf/a.pem {data}/other/sub/c.pem
            printf 'shared between both directories\n' > {data}/shared.key
            ln {data}/shared.key {etc}/shared.key
            printf 'one name outside\n' > {data}/outside-linked
            ln {data}/outside-linked {outside}
            """);

        var manifest = await trip.BackupWipeRestoreAsync();

        var inodes = Shell.Text($"stat -c '%i %h %a' {data}/conf/a.pem {data}/conf/b.pem {data}/other/sub/c.pem").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.HasCount(3, inodes);
        Assert.AreEqual(1, inodes.Distinct().Count(), $"one inode for the three names: {string.Join(" | ", inodes)}");
        Assert.EndsWith(" 3 640", inodes[0], "link count 3 and the file's mode");
        Assert.AreEqual("certificate\n", Shell.Text($"cat {data}/other/sub/c.pem"));

        var shared = Shell.Text($"stat -c '%i %h' {data}/shared.key {etc}/shared.key").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.AreEqual(shared[0], shared[1], "the name in the second config directory is the same inode");
        Assert.EndsWith(" 2", shared[0]);

        // The name outside the config directories was never part of the backup: one link now,
        // and the backup said so once, and recorded it in the set.
        Assert.AreEqual("1\none name outside\n", Shell.Text($"stat -c '%h' {data}/outside-linked; cat {data}/outside-linked"));
        var warnings = trip.BackupWarnings();
        Assert.HasCount(1, warnings, string.Join("\n", warnings));
        Assert.Contains("hard link", warnings[0]);
        Assert.Contains(trip.Data + "/outside-linked", warnings[0]);
        var notKept = manifest.Find(BackupLayout.ConfigArtifact)!.NotKept!;
        Assert.HasCount(1, notKept);
        Assert.AreEqual(1, notKept[0].Count);
        CollectionAssert.AreEqual(new[] { trip.Data + "/outside-linked" }, notKept[0].Examples.ToList());
    }
}
