using System.Diagnostics;
using System.Text.RegularExpressions;
using RegistryDR.Tests.Deployment;
using RegistryDR.Tests.Infrastructure;

namespace RegistryDR.Tests.Cli;

/// <summary>
/// README.md's "Using it on a node" block, run exactly as written, as root, in a private mount
/// namespace where /etc (an overlay), /opt and /var/backups (tmpfs) are scratch: nothing it writes
/// reaches this machine. apt-get and systemctl are stand-ins that record their arguments; the
/// database and config directories are the test node's, given as REGISTRYDR__ variables.
/// </summary>
[TestClass]
public sealed class ReadmeNodeInstallTests
{
    [TestMethod]
    public async Task TheReadmesNodeSection_WorksAsPasted_AndMatchesTheSystemdUnit()
    {
        if (!Environment.IsPrivilegedProcess) Assert.Inconclusive("the README's steps run as root");
        var readme = File.ReadAllText(Path.Combine(DeploymentTestSupport.RepoRoot, "README.md"));
        var section = Regex.Match(readme, @"<!-- node-install:begin -->\s*```sh\n(?<block>.*?)```\s*<!-- node-install:end -->", RegexOptions.Singleline);
        Assert.IsTrue(section.Success, "README.md has no node-install block between its markers");

        using var storeScope = new TempDirectory("rdr-readme-store-");
        await using var node = await TestNode.CreateAsync("file://" + storeScope.Path);
        using var work = new TempDirectory("rdr-readme-");
        var w = work.Path;
        File.WriteAllText(Path.Combine(w, "block.sh"), section.Groups["block"].Value);
        File.WriteAllText(Path.Combine(w, "password"), node.Cluster.SuperUserPassword + "\n");
        Directory.CreateDirectory(Path.Combine(w, "stubs"));
        Directory.CreateDirectory(Path.Combine(w, "mnt"));
        foreach (var tool in new[] { "apt-get", "systemctl" })
        {
            var stub = Path.Combine(w, "stubs", tool);
            File.WriteAllText(stub, $"#!/bin/sh\necho \"{tool} $*\" >>'{w}/calls'\n");
            File.SetUnixFileMode(stub, (UnixFileMode)0b111_101_101);
        }
        var harness = $$"""
            set -euo pipefail
            mount -t tmpfs tmpfs '{{w}}/mnt'
            mkdir '{{w}}/mnt/upper' '{{w}}/mnt/work'
            mount -t overlay overlay -o 'lowerdir=/etc,upperdir={{w}}/mnt/upper,workdir={{w}}/mnt/work' /etc
            mount -t tmpfs tmpfs /opt
            mount -t tmpfs tmpfs /var/backups
            cd '{{DeploymentTestSupport.RepoRoot}}'
            PATH='{{w}}/stubs':$PATH bash -euo pipefail '{{w}}/block.sh' <'{{w}}/password'
            echo '== after'
            stat -c '%a %n' /etc/registry-dr /etc/registry-dr/db-password /etc/registry-dr/registry-dr.json /opt/registry-dr/bin/registry-dr /var/backups/registry-dr
            cmp /etc/registry-dr/db-password '{{w}}/password' && echo 'password file holds the password'
            cmp /etc/systemd/system/registry-dr-worker.service bootstrap/registry-dr-worker.service && echo 'unit installed'
            /opt/registry-dr/bin/registry-dr list
            """;
        var psi = new ProcessStartInfo("unshare", ["--mount", "--propagation", "private", "bash", "-c", harness])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        var o = node.Options;
        psi.Environment["REGISTRYDR__Database__Port"] = o.Database.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["REGISTRYDR__Database__Name"] = o.Database.Name;
        psi.Environment["REGISTRYDR__Database__BinDirectory"] = o.Database.BinDirectory;
        psi.Environment["REGISTRYDR__Config__Directories__0"] = o.Config.Directories[0];
        psi.Environment["REGISTRYDR__Config__Directories__1"] = o.Config.Directories[1];
        psi.Environment["REGISTRYDR__Agent__StateFile"] = o.Agent.StateFile;
        psi.Environment["REGISTRYDR__Monitoring__EmfLogPath"] = "";
        using var run = Process.Start(psi)!;
        var stdout = run.StandardOutput.ReadToEndAsync();
        var stderr = run.StandardError.ReadToEndAsync();
        await run.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(10));
        var output = await stdout + "\n" + await stderr;
        Assert.AreEqual(0, run.ExitCode, output);

        var after = (await stdout)[(await stdout).IndexOf("== after", StringComparison.Ordinal)..];
        foreach (var line in new[]
        {
            "700 /etc/registry-dr", "600 /etc/registry-dr/db-password", "600 /etc/registry-dr/registry-dr.json",
            "755 /opt/registry-dr/bin/registry-dr", "700 /var/backups/registry-dr",
            "password file holds the password", "unit installed",
        })
            StringAssert.Contains(after, line + "\n");
        StringAssert.Matches(after, new Regex(@"\n\d{8}T\d{6}\.\d{3}Z-\S+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC +\d+\.\d [KM]iB +complete +-\n"));
        StringAssert.Contains(await stdout, "Initialised file:///var/backups/registry-dr: wrote registry-dr-store.json");
        StringAssert.Contains(await stdout, "Protection:      OK");
        CollectionAssert.AreEqual(new[]
        {
            "apt-get install -y postgresql-client-15",
            "systemctl daemon-reload",
            "systemctl enable --now registry-dr-worker.service",
        }, File.ReadAllLines(Path.Combine(w, "calls")));

        // The unit runs what the README installed, with the config the README wrote.
        var unit = File.ReadAllText(Path.Combine(DeploymentTestSupport.BootstrapDirectory, "registry-dr-worker.service"));
        StringAssert.Contains(unit, "ConditionPathExists=/opt/registry-dr/bin/registry-dr\n");
        StringAssert.Contains(unit, "ExecStart=/opt/registry-dr/bin/registry-dr worker --config ${REGISTRYDR_CONFIG_PATH}\n");
        StringAssert.Contains(unit, "Environment=REGISTRYDR_CONFIG_PATH=/etc/registry-dr/registry-dr.json\n");
        Assert.IsFalse(Directory.Exists("/etc/registry-dr"), "nothing reached the machine's /etc");
    }
}
