namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// POSIX ACLs (system.posix_acl_access and system.posix_acl_default) are part of a file's
/// permissions: a service that reads a key through an ACL entry must still be able to after a
/// restore, and a directory's default ACL must still shape what is created in it.
/// </summary>
[TestClass]
public sealed class ConfigAclTests
{
    [TestMethod]
    public async Task AccessAndDefaultAclsComeBackEntryForEntry()
    {
        await using var trip = await ConfigRoundTrip.CreateAsync();
        var data = Shell.Quote(trip.Data);
        var etc = Shell.Quote(trip.Etc);
        Shell.Run($"""
            mkdir -p {data}/ssl
            head -c 2048 /dev/urandom > {data}/ssl/server.key
            chmod 640 {data}/ssl/server.key
            setfacl -m u:101:r,g:4242:r {data}/ssl/server.key
            setfacl -m u:101:rx {data}/ssl
            setfacl -d -m u:101:r,g:4242:rx,o::- {data}/ssl
            mkdir {data}/ssl/inherited
            printf 'x' > {etc}/htaccess
            chmod 600 {etc}/htaccess
            setfacl -m u:3000000:rw,m::rw {etc}/htaccess
            """);
        var before = TreeAcls(trip.Data) + TreeAcls(trip.Etc);

        await trip.BackupWipeRestoreAsync();

        Assert.AreEqual(
            "user::rw-\nuser:101:r--\ngroup::r--\ngroup:4242:r--\nmask::r--\nother::---\n\n",
            Shell.Text($"getfacl --omit-header -n -p {data}/ssl/server.key"));
        Assert.AreEqual(
            "user::rwx\nuser:101:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n" +
            "default:user::rwx\ndefault:user:101:r--\ndefault:group::r-x\ndefault:group:4242:r-x\ndefault:mask::r-x\ndefault:other::---\n\n",
            Shell.Text($"getfacl --omit-header -n -p {data}/ssl"));
        Assert.AreEqual(
            "user::rw-\nuser:3000000:rw-\ngroup::---\nmask::rw-\nother::---\n\n",
            Shell.Text($"getfacl --omit-header -n -p {etc}/htaccess"));

        // And every other entry of both trees, including the directory that inherited its ACLs.
        Assert.AreEqual(before, TreeAcls(trip.Data) + TreeAcls(trip.Etc));
        Assert.Contains("# file: ./ssl/inherited\n", before);
        Assert.Contains("default:user:101:r--", before);
    }

    /// <summary>getfacl of every entry below the directory, relative names, numeric ids.</summary>
    private static string TreeAcls(string directory) =>
        Shell.Text($"cd {Shell.Quote(directory)} && getfacl -R -n -p . 2>&1");
}
