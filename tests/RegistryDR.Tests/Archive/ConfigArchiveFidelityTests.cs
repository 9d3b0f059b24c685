using System.Text;
using RegistryDR.Archive;
using RegistryDR.Archive.Internal;
using RegistryDR.Tests.Fidelity;

namespace RegistryDR.Tests.Archive;

/// <summary>
/// Each kind of file metadata through <see cref="ConfigArchiveWriter"/> and
/// <see cref="ConfigArchiveReader"/> alone (the round trips through a real backup and restore are
/// under Fidelity/), read back with stock tools; then the same archive extracted by GNU tar, and
/// extraction onto a filesystem without xattr or ACL support. Trees are built with bash, and
/// compared with find, stat, getfacl and getfattr.
/// </summary>
[TestClass]
public sealed class ConfigArchiveFidelityTests
{
    private const string NetBindService = "0x0100000200040000000000000000000000000000";

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task NamesThatAreNotUtf8AreArchivedAsTheirBytes()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        Shell.Run($"""
            cd {Shell.Quote(source)}
            mkdir $'dir-\xff'
            printf 'latin-1' > $'dir-\xff/caf\xe9.conf'
            printf 'cesu' > $'caf\xed\xb3\xa9.conf'
            ln -s $'dir-\xff/caf\xe9.conf' $'link-\xe9'
            mkdir {new string('d', 150)}
            printf 'long' > {new string('d', 150)}/$'\xe9{new string('f', 200)}'
            """);
        var roots = new[] { ArchiveRoot.For(source) };

        var (stats, staging) = await RoundTripAsync(temp, roots);

        Assert.IsEmpty(stats.NotKept);
        CollectionAssert.AreEqual(Shell.RawNames(source).Select(Convert.ToHexString).ToList(), Shell.RawNames(staging[0]).Select(Convert.ToHexString).ToList());
        Assert.AreEqual("latin-1", Shell.Text($"cat {Shell.Quote(staging[0])}/$'dir-\\xff/caf\\xe9.conf'"));
        Assert.AreEqual("cesu", Shell.Text($"cat {Shell.Quote(staging[0])}/$'caf\\xed\\xb3\\xa9.conf'"));
        CollectionAssert.AreEqual(Latin1("dir-\xff/caf\xe9.conf"), Shell.Run($"readlink -n {Shell.Quote(staging[0])}/$'link-\\xe9'"));
        Assert.AreEqual("long", Shell.Text($"cat {Shell.Quote(staging[0])}/{new string('d', 150)}/$'\\xe9{new string('f', 200)}'"));
    }

    [TestMethod]
    public async Task HardLinksAcrossSubdirectoriesAndRootsShareOneInode()
    {
        using var temp = new TempDirectory();
        var dtr = temp.CreateDirectory("src/var/dtr");
        var etc = temp.CreateDirectory("src/etc/dtr");
        Shell.Run($"""
            cd {Shell.Quote(dtr)}
            mkdir -p a/b c
            printf 'shared' > a/b/one
            ln a/b/one c/two
            ln a/b/one {Shell.Quote(etc)}/three
            """);
        var roots = new[] { ArchiveRoot.For(dtr), ArchiveRoot.For(etc) };

        var (stats, staging) = await RoundTripAsync(temp, roots);

        Assert.AreEqual(1, stats.Files);
        Assert.AreEqual(2, stats.HardLinks);
        var lines = Shell.Text($"stat -c '%i %h' {Shell.Quote(staging[0])}/a/b/one {Shell.Quote(staging[0])}/c/two {Shell.Quote(staging[1])}/three").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.AreEqual(1, lines.Distinct().Count(), string.Join(" | ", lines));
        Assert.EndsWith(" 3", lines[0]);
    }

    [TestMethod]
    public async Task AccessAndDefaultAclsAreArchivedEntryForEntry()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        Shell.RequireXattrsAndAcls(source);
        Shell.Run($"""
            cd {Shell.Quote(source)}
            mkdir keys
            printf 'k' > keys/server.key
            chmod 640 keys/server.key
            setfacl -m u:101:r,g:4242:r keys/server.key
            setfacl -d -m u:101:r,o::- keys
            """);

        var (stats, staging) = await RoundTripAsync(temp, [ArchiveRoot.For(source)]);

        Assert.IsEmpty(stats.NotKept);
        Assert.AreEqual("user::rw-\nuser:101:r--\ngroup::r--\ngroup:4242:r--\nmask::r--\nother::---\n\n", Shell.Text($"getfacl --omit-header -n -p {Shell.Quote(staging[0])}/keys/server.key"));
        Assert.AreEqual(
            "user::rwx\ngroup::r-x\nother::r-x\ndefault:user::rwx\ndefault:user:101:r--\ndefault:group::r-x\ndefault:mask::r-x\ndefault:other::---\n\n",
            Shell.Text($"getfacl --omit-header -n -p {Shell.Quote(staging[0])}/keys"));
    }

    [TestMethod]
    public async Task ExtendedAttributesAreArchivedWithTheirExactValues()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        Shell.RequireXattrsAndAcls(source);
        Shell.Run($"""
            cd {Shell.Quote(source)}
            printf 'bin' > tool
            setfattr -n security.capability -v {NetBindService} tool
            setfattr -n user.binary -v 0x00ff80 tool
            setfattr -n trusted.note -v hello tool
            setfattr -n $'user.caf\xe9' -v 1 tool
            """);

        var (stats, staging) = await RoundTripAsync(temp, [ArchiveRoot.For(source)]);

        Assert.IsEmpty(stats.NotKept);
        Assert.AreEqual(
            $"security.capability={NetBindService}$\ntrusted.note=0x68656c6c6f$\nuser.binary=0x00ff80$\nuser.caf\\351=0x31$\n",
            Shell.Text($"getfattr -h --absolute-names -d -m - -e hex {Shell.Quote(staging[0])}/tool | grep -v '^#' | grep -v '^$' | sort | sed -n 'l 0'"));
    }

    [TestMethod]
    public async Task NanosecondMtimesAndSpecialBitsAreArchived()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        Shell.Run($"""
            cd {Shell.Quote(source)}
            printf 'x' > suid && chown 1234:5678 suid && chmod 6755 suid
            mkdir sticky && chmod 1777 sticky
            ln -s suid link
            touch -d @1700000000.000000001 suid
            touch -h -d @1500000000.999999999 link
            touch -d @-1.5 sticky
            """);

        var (_, staging) = await RoundTripAsync(temp, [ArchiveRoot.For(source)]);

        Assert.AreEqual(
            "6755 1234 5678 1700000000.000000001\n777 0 0 1500000000.999999999\n1777 0 0 -1.500000000\n",
            Shell.Text($"cd {Shell.Quote(staging[0])} && stat -c '%a %u %g %.9Y' suid link sticky"));
    }

    /// <summary>
    /// The runbook's by-hand restore: GNU tar 1.34 (Debian's) must extract our archive to the same
    /// tree — names as bytes, hard links, ACLs, xattrs, ns mtimes, modes and owners — without a
    /// warning. The command is the one docs/runbook.md gives.
    /// </summary>
    [TestMethod]
    public async Task GnuTarExtractsOurArchiveToTheSameTree()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        Shell.RequireXattrsAndAcls(source);
        Shell.Run($"""
            cd {Shell.Quote(source)}
            mkdir -p $'conf-\xe9' keys
            printf 'a' > $'conf-\xe9/caf\xe9.conf'
            ln $'conf-\xe9/caf\xe9.conf' keys/hard
            ln -s $'../conf-\xe9/caf\xe9.conf' keys/$'link-\xff'
            printf 'k' > keys/server.key && chown 1234:5678 keys/server.key && chmod 640 keys/server.key
            setfacl -m u:101:r keys/server.key
            setfacl -d -m g:4242:rx keys
            printf 'b' > tool && chmod 4755 tool
            setfattr -n security.capability -v {NetBindService} tool
            setfattr -n user.note -v 0x00ff tool
            touch -d @1700000000.123456789 tool keys/server.key
            touch -d @1600000000.5 keys $'conf-\xe9'
            """);
        var roots = new[] { ArchiveRoot.For(source) };
        var archivePath = Path.Combine(temp.Path, "config.tar.gz");
        await using (var output = File.Create(archivePath))
        {
            await ConfigArchiveWriter.WriteAsync(roots, [], output, null, TestContext.CancellationToken);
        }

        var extracted = temp.CreateDirectory("by-hand");
        var stderr = Shell.Text($"cd {Shell.Quote(extracted)} && tar --acls --xattrs --xattrs-include='*' --numeric-owner -xpzf {Shell.Quote(archivePath)} 2>&1");
        Assert.AreEqual(string.Empty, stderr, "GNU tar warned");
        var byHand = Path.Combine(extracted, roots[0].EntryPrefix);

        Assert.AreEqual(Describe(source), Describe(byHand));
        Assert.Contains("# file: ./keys/server.key\n# owner: 1234\n# group: 5678\nuser::rw-\nuser:101:r--\n", Describe(byHand));
        Assert.Contains($"security.capability={NetBindService}", Describe(byHand));
    }

    /// <summary>
    /// Onto a filesystem without xattrs or ACLs (ramfs), the extraction still succeeds and reports
    /// each kind once with its count; the owning group keeps only its effective ACL permissions.
    /// </summary>
    [TestMethod]
    public async Task ATargetWithoutXattrOrAclSupportIsReportedOncePerKind()
    {
        using var temp = new TempDirectory();
        var source = temp.CreateDirectory("src/dtr");
        Shell.RequireXattrsAndAcls(source);
        Shell.Run($"""
            cd {Shell.Quote(source)}
            for f in a b c; do printf "$f" > $f; setfattr -n user.tag -v $f $f; done
            chmod 670 a
            setfacl -m u:101:rw,g::r,m::rw a
            setfacl -d -m u:101:r .
            """);
        var archive = new MemoryStream();
        await ConfigArchiveWriter.WriteAsync([ArchiveRoot.For(source)], [], archive, null, TestContext.CancellationToken);

        var mount = temp.CreateDirectory("ramfs");
        try
        {
            Shell.Run($"mount -t ramfs ramfs {Shell.Quote(mount)}");
        }
        catch (AssertFailedException ex)
        {
            Assert.Fail($"This test needs to mount a ramfs (a filesystem without xattr support) as root and could not: {ex.Message}");
        }

        try
        {
            var staging = Directory.CreateDirectory(Path.Combine(mount, "dtr")).FullName;
            var stats = await ConfigArchiveReader.ExtractAsync(new MemoryStream(archive.ToArray()), [ArchiveRoot.For(source)], new Dictionary<string, string> { [ArchiveRoot.For(source).EntryPrefix] = staging }, true, TestContext.CancellationToken);

            CollectionAssert.AreEqual(
                new[]
                {
                    $"user.* extended attribute (the target filesystem does not support it) (3): '{staging}/a', '{staging}/b', '{staging}/c'",
                    $"POSIX access ACL (the target filesystem does not support ACLs; the owning group keeps only its effective permissions) (1): '{staging}/a'",
                    $"POSIX default ACL (the target filesystem does not support ACLs) (1): '{staging}'",
                },
                stats.NotKept.Select(n => n.Describe()).ToList());
            Assert.AreEqual("a 640\nb 644\nc 644\n", Shell.Text($"cd {Shell.Quote(staging)} && stat -c '%n %a' a b c"), "group bits narrowed to group::r-- limited by mask::rw-");
        }
        finally
        {
            Shell.Run($"umount {Shell.Quote(mount)}");
        }
    }

    [TestMethod]
    public void AttributesOnlyRootMaySetAreReportedNotFailedWhenNotRoot()
    {
        Assert.AreEqual("trusted.* extended attribute (only root may set it)", ExtendedAttributes.OmissionFor("trusted.x", UnixFileSystem.Eperm, privileged: false));
        Assert.AreEqual("security.capability extended attribute (only root may set it)", ExtendedAttributes.OmissionFor("security.capability", UnixFileSystem.Eperm, privileged: false));
        Assert.AreEqual("security.* extended attribute (the kernel refused it: permission denied)", ExtendedAttributes.OmissionFor("security.selinux", UnixFileSystem.Eacces, privileged: true));
        Assert.AreEqual("user.* extended attribute (no room for it on the target filesystem)", ExtendedAttributes.OmissionFor("user.big", UnixFileSystem.Enospc, privileged: true));
        Assert.IsNull(ExtendedAttributes.OmissionFor("user.x", 5 /* EIO */, privileged: true), "an I/O error stops the restore");
    }

    /// <summary>Names, types, modes, owners, ns mtimes, link counts, link targets, contents, ACLs and xattrs of every entry below a directory.</summary>
    private static string Describe(string directory) => Shell.Text($"""
        cd {Shell.Quote(directory)}
        find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
          stat -c '%n %F %a %u %g %.9Y %h' -- "$p" | od -An -c | tr -s ' ' | tr -d '\n'; echo
          if [ -L "$p" ]; then readlink -- "$p" | od -An -tx1; elif [ -f "$p" ]; then sha256sum < "$p"; fi
        done
        getfacl -R -n -p . 2>/dev/null
        getfattr -R -h -d -m - -e hex . 2>/dev/null | grep -v '^# file' || true
        """);

    private static byte[] Latin1(string text) => Encoding.Latin1.GetBytes(text);

    private async Task<(ArchiveStats Stats, string[] Staging)> RoundTripAsync(TempDirectory temp, ArchiveRoot[] roots)
    {
        var archive = new MemoryStream();
        var written = await ConfigArchiveWriter.WriteAsync(roots, [], archive, null, TestContext.CancellationToken);
        Assert.IsEmpty(written.NotKept, string.Join("; ", written.NotKept.Select(n => n.Describe())));
        var staging = roots.Select((_, i) => temp.CreateDirectory($"staging/{i}")).ToArray();
        var targets = roots.Select((root, i) => (root.EntryPrefix, staging[i])).ToDictionary(p => p.EntryPrefix, p => p.Item2);
        var validated = await ConfigArchiveReader.ValidateAsync(new MemoryStream(archive.ToArray()), roots, TestContext.CancellationToken);
        var stats = await ConfigArchiveReader.ExtractAsync(new MemoryStream(archive.ToArray()), roots, targets, restoreOwnership: true, TestContext.CancellationToken);
        Assert.AreEqual(validated with { NotKept = [] }, stats with { NotKept = [] }, "validation and extraction count the same");
        return (stats, staging);
    }
}
