namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Extended attributes come back with their exact values: user.* (text and binary), the file
/// capability a service binary needs (security.capability), and trusted.* when restoring as root
/// (these tests run as root), on files, directories and symbolic links.
/// </summary>
[TestClass]
public sealed class ConfigXattrTests
{
    // VFS_CAP_REVISION_2, permitted = CAP_NET_BIND_SERVICE (bit 10), effective flag set.
    private const string NetBindService = "0x0100000200040000000000000000000000000000";

    [TestMethod]
    public async Task UserSecurityCapabilityAndTrustedAttributesComeBackExactly()
    {
        Assert.IsTrue(Environment.IsPrivilegedProcess, "These tests run as root (trusted.* and security.capability need it).");
        await using var trip = await ConfigRoundTrip.CreateAsync();
        var data = Shell.Quote(trip.Data);
        var etc = Shell.Quote(trip.Etc);
        var big = string.Concat(Enumerable.Range(0, 1500).Select(i => (i % 256).ToString("x2")));
        Shell.Run($"""
            mkdir -p {data}/bin {data}/certs
            printf '#!/bin/sh\n' > {data}/bin/registry
            chmod 755 {data}/bin/registry
            setfattr -n security.capability -v {NetBindService} {data}/bin/registry
            setfattr -n user.rotated-by -v cert-manager {data}/certs
            printf 'k' > {data}/certs/server.key
            setfattr -n user.binary -v 0x00ff80fe {data}/certs/server.key
            setfattr -n user.big -v 0x{big} {data}/certs/server.key
            setfattr -n trusted.registry-dr.test -v 0x0102 {data}/certs/server.key
            ln -s server.key {data}/certs/current
            setfattr -h -n trusted.on-link -v link-value {data}/certs/current
            printf 'e' > {etc}/env
            setfattr -n user.empty {etc}/env
            """);

        await trip.BackupWipeRestoreAsync();

        Assert.AreEqual(NetBindService, Xattr($"{data}/bin/registry", "security.capability"));
        Assert.AreEqual("0x636572742d6d616e61676572", Xattr($"{data}/certs", "user.rotated-by"));
        Assert.AreEqual("0x00ff80fe", Xattr($"{data}/certs/server.key", "user.binary"));
        Assert.AreEqual("0x" + big, Xattr($"{data}/certs/server.key", "user.big"));
        Assert.AreEqual("0x0102", Xattr($"{data}/certs/server.key", "trusted.registry-dr.test"));
        Assert.AreEqual("0x6c696e6b2d76616c7565", Xattr($"{data}/certs/current", "trusted.on-link"));
        Assert.AreEqual("server.key", Shell.Text($"readlink -n {data}/certs/current"));
        Assert.AreEqual("0x", Xattr($"{etc}/env", "user.empty"));

        // Nothing more than what was there: each file's full list of names.
        Assert.AreEqual("security.capability\n", Names($"{data}/bin/registry"));
        Assert.AreEqual("trusted.registry-dr.test\nuser.big\nuser.binary\n", Names($"{data}/certs/server.key"));
        Assert.AreEqual("755", Shell.Text($"stat -c %a {data}/bin/registry").Trim(), "the capability did not cost the mode");
    }

    /// <summary>The value as getfattr prints it in hex ("0x…"; "0x" for an empty value).</summary>
    private static string Xattr(string quotedPath, string name) =>
        Shell.Text($"getfattr -h --absolute-names -e hex -n {name} {quotedPath}")
            .Split('\n').Single(l => l.StartsWith(name + "=", StringComparison.Ordinal))[(name.Length + 1)..];

    private static string Names(string quotedPath) =>
        Shell.Text($"getfattr -h --absolute-names -m - {quotedPath} | grep -v '^#' | grep -v '^$' | LC_ALL=C sort");
}
