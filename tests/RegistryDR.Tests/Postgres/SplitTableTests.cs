using RegistryDR.Backup;
using RegistryDR.Postgres;

namespace RegistryDR.Tests.Postgres;

[TestClass]
public sealed class SplitTableUnitTests
{
    [TestMethod]
    [DataRow(0L, 4L, "[0,)")]
    [DataRow(3L, 4L, "[0,)")]
    [DataRow(4L, 4L, "[0,)")]
    [DataRow(5L, 4L, "[0,4) [4,)")]
    [DataRow(12L, 4L, "[0,4) [4,8) [8,)")]
    [DataRow(13L, 4L, "[0,4) [4,8) [8,12) [12,)")]
    public void Ranges_CoverEveryPage_AndTheLastIsOpen(long pages, long chunk, string expected)
    {
        var ranges = SplitTable.Ranges(pages, chunk);
        Assert.AreEqual(expected, string.Join(" ", ranges.Select(r => $"[{r.From},{r.To})")));
    }

    [TestMethod]
    public void Sql_QuotesEveryName_SoNoNameCanChangeTheStatement()
    {
        var table = new SplitTable("we\"ird", "Audit.Log*?", ["id", "a\"); DROP TABLE x; --"], 10, 8192);
        Assert.AreEqual("COPY (SELECT \"id\", \"a\"\"); DROP TABLE x; --\" FROM ONLY \"we\"\"ird\".\"Audit.Log*?\" WHERE ctid >= '(4,0)'::tid AND ctid < '(8,0)'::tid) TO STDOUT (FORMAT binary)",
            table.CopyOutSql(4, 8));
        Assert.AreEqual("COPY \"we\"\"ird\".\"Audit.Log*?\" (\"id\", \"a\"\"); DROP TABLE x; --\") FROM STDIN (FORMAT binary)", table.CopyInSql);
        Assert.EndsWith("WHERE ctid >= '(8,0)'::tid) TO STDOUT (FORMAT binary)", table.CopyOutSql(8, null));
        Assert.AreEqual("\"we\"\"ird\".\"Audit.Log*?\"", table.DumpPattern);
    }

    [TestMethod]
    [DataRow("1A2B3C4D-00000002-1", true)]
    [DataRow("00000003-0000001B-1", true)]
    [DataRow("1A2B3C4D-00000002-1'; DROP TABLE x; --", false)]
    [DataRow("", false)]
    public void SnapshotIds_AreCheckedBeforeTheyGoIntoSql(string id, bool valid) =>
        Assert.AreEqual(valid, ExportedSnapshot.SnapshotId().IsMatch(id));

    [TestMethod]
    public void TableDataArtifacts_HaveTheirOwnNamesAndKeys()
    {
        var name = BackupLayout.TableDataArtifact(3, 17);
        Assert.AreEqual("data-0003-00017", name);
        Assert.IsTrue(BackupLayout.IsTableDataArtifact(name));
        Assert.AreEqual("backups/20240506T070809Z-a1b2c3/data/0003-00017.copy.gz", BackupLayout.ArtifactKey("20240506T070809Z-a1b2c3", name));
        foreach (var other in new[] { "database", "globals", "config", "data-", "data-x", "data-1-", "datax-1" })
            Assert.IsFalse(BackupLayout.IsTableDataArtifact(other), other);
    }
}
