using System.Text;

namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Linux file names are bytes. A config directory written by a Latin-1 tool, or unpacked from an
/// old tarball, holds names that are not UTF-8; they must come back byte for byte — files,
/// directories, symbolic link targets, long names — through a real backup and restore.
/// </summary>
[TestClass]
public sealed class ConfigNonUtf8NamesTests
{
    // Raw names, relative to their config directory.
    private static readonly byte[] Latin1File = Bytes("caf", 0xe9, ".conf");
    private static readonly byte[] Latin1Directory = Bytes("r", 0xe9, "pertoire-", 0xff);
    private static readonly byte[] InnerFile = [.. Latin1Directory, .. "/inner-"u8, 0xe9, .. ".txt"u8];
    private static readonly byte[] LinkToLatin1 = Bytes("link-", 0xe9);
    private static readonly byte[] DanglingLink = Bytes("dangling-", 0xfe);
    private static readonly byte[] DanglingTarget = Bytes("nowhere-", 0xfe, 0x80);

    // The UTF-8 encoding of the lone surrogate U+DCE9 is not valid UTF-8 either; it must stay
    // three bytes and never be confused with the single byte 0xE9 above.
    private static readonly byte[] SurrogateBytes = Bytes("caf", 0xed, 0xb3, 0xa9, ".conf");
    private static readonly byte[] ValidEmoji = Bytes("skull-", 0xf0, 0x9f, 0x92, 0x80, ".conf");

    // 250-byte segment under a 120-byte directory: the path needs a PAX record, and is not UTF-8.
    private static readonly byte[] LongDirectory = [.. Encoding.ASCII.GetBytes(new string('d', 119)), 0xe4];
    private static readonly byte[] LongFile = [.. LongDirectory, (byte)'/', .. Enumerable.Repeat((byte)0xe9, 125), .. Encoding.ASCII.GetBytes(new string('f', 125))];
    private static readonly byte[] EtcFile = Bytes("na", 0xef, "ve.yml");

    [TestMethod]
    public async Task NamesThatAreNotUtf8ComeBackByteForByte()
    {
        await using var trip = await ConfigRoundTrip.CreateAsync();
        var data = Shell.Quote(trip.Data);
        Shell.Run($"""
            cd {data}
            printf 'tls: on\n' > {Shell.AnsiC(Latin1File)}
            printf 'surrogate\n' > {Shell.AnsiC(SurrogateBytes)}
            printf 'emoji\n' > {Shell.AnsiC(ValidEmoji)}
            mkdir {Shell.AnsiC(Latin1Directory)}
            chmod 750 {Shell.AnsiC(Latin1Directory)}
            printf 'inner\n' > {Shell.AnsiC(InnerFile)}
            ln -s {Shell.AnsiC(Latin1File)} {Shell.AnsiC(LinkToLatin1)}
            ln -s {Shell.AnsiC(DanglingTarget)} {Shell.AnsiC(DanglingLink)}
            mkdir {Shell.AnsiC(LongDirectory)}
            printf 'long\n' > {Shell.AnsiC(LongFile)}
            cd {Shell.Quote(trip.Etc)}
            printf 'etc\n' > {Shell.AnsiC(EtcFile)}
            """);
        var dataBefore = Shell.RawNames(trip.Data);
        var etcBefore = Shell.RawNames(trip.Etc);

        await trip.BackupWipeRestoreAsync();

        // Nothing was left out with a warning: the names are not "disappeared".
        Assert.IsEmpty(trip.BackupWarnings(), string.Join("\n", trip.BackupWarnings()));
        AssertSameNames(dataBefore, Shell.RawNames(trip.Data));
        AssertSameNames(etcBefore, Shell.RawNames(trip.Etc));

        // The exact bytes, spelled out, so a writer and reader agreeing on a wrong name still fail.
        var data2 = Shell.Quote(trip.Data);
        Assert.AreEqual("tls: on\n", Shell.Text($"cat {data2}/{Shell.AnsiC(Latin1File)}"));
        Assert.AreEqual("surrogate\n", Shell.Text($"cat {data2}/{Shell.AnsiC(SurrogateBytes)}"));
        Assert.AreEqual("emoji\n", Shell.Text($"cat {data2}/{Shell.AnsiC(ValidEmoji)}"));
        Assert.AreEqual("inner\n", Shell.Text($"cat {data2}/{Shell.AnsiC(InnerFile)}"));
        Assert.AreEqual("long\n", Shell.Text($"cat {data2}/{Shell.AnsiC(LongFile)}"));
        Assert.AreEqual("etc\n", Shell.Text($"cat {Shell.Quote(trip.Etc)}/{Shell.AnsiC(EtcFile)}"));
        Assert.AreEqual("directory 750\n", Shell.Text($"stat -c '%F %a' {data2}/{Shell.AnsiC(Latin1Directory)}"));
        CollectionAssert.AreEqual(Latin1File, Shell.Run($"readlink -n {data2}/{Shell.AnsiC(LinkToLatin1)}"), "symbolic link target bytes");
        CollectionAssert.AreEqual(DanglingTarget, Shell.Run($"readlink -n {data2}/{Shell.AnsiC(DanglingLink)}"), "dangling symbolic link target bytes");

        // Restoring again over the live tree must replace it (and delete the previous copy, whose
        // names are not UTF-8 either) without leaving anything beside the directory.
        await trip.RestoreAsync();
        AssertSameNames(dataBefore, Shell.RawNames(trip.Data));
        Assert.AreEqual(string.Empty, Shell.Text($"cd {Shell.Quote(Path.GetDirectoryName(trip.Data)!)} && ls -A | grep registry-dr || true"));
    }

    private static void AssertSameNames(List<byte[]> expected, List<byte[]> actual) =>
        CollectionAssert.AreEqual(expected.Select(Convert.ToHexString).ToList(), actual.Select(Convert.ToHexString).ToList(), "raw names (hex) after restore");

    private static byte[] Bytes(params object[] parts) =>
        [.. parts.SelectMany(p => p switch
        {
            string s => Encoding.ASCII.GetBytes(s),
            int b => [(byte)b],
            _ => throw new ArgumentException("string or byte", nameof(parts)),
        })];
}
