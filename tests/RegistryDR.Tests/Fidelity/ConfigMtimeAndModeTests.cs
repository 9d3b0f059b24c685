namespace RegistryDR.Tests.Fidelity;

/// <summary>
/// Modification times to the nanosecond (files, directories, symbolic links), setuid, setgid and
/// sticky bits with non-root owners, empty files, and sparse files (restored with their holes:
/// every all-zero 4 KiB block is left unallocated).
/// </summary>
[TestClass]
public sealed class ConfigMtimeAndModeTests
{
    [TestMethod]
    public async Task NanosecondMtimesSpecialBitsEmptyAndSparseFilesComeBackExactly()
    {
        await using var trip = await ConfigRoundTrip.CreateAsync();
        var data = Shell.Quote(trip.Data);
        Shell.Run($"""
            mkdir -p {data}/bin {data}/spool {data}/shared
            printf 'x' > {data}/bin/suid
            chown 1234:5678 {data}/bin/suid
            chmod 6750 {data}/bin/suid
            chown 1234:5678 {data}/spool
            chmod 3775 {data}/spool
            chmod 1777 {data}/shared
            : > {data}/empty.conf
            chmod 600 {data}/empty.conf
            truncate -s 10M {data}/sparse.img
            printf 'tail' | dd of={data}/sparse.img bs=1 seek=8000000 conv=notrunc status=none
            ln -s bin/suid {data}/link
            touch -d @1680674828.123456789 {data}/bin/suid
            touch -d @1680674829.000000001 {data}/empty.conf
            touch -d @1680674830.5 {data}/sparse.img
            touch -h -d @1680674831.987654321 {data}/link
            touch -d @1680674832.222222222 {data}/bin {data}/spool {data}/shared
            """);
        var sparseHash = Shell.Text($"sha256sum < {data}/sparse.img");

        await trip.BackupWipeRestoreAsync();

        Assert.AreEqual(
            "6750 1234 5678 1680674828.123456789 1\n" +
            "600 0 0 1680674829.000000001 0\n" +
            "644 0 0 1680674830.500000000 10485760\n" +
            "777 0 0 1680674831.987654321 8\n" +
            "755 0 0 1680674832.222222222 4096\n" +
            "3775 1234 5678 1680674832.222222222 4096\n" +
            "1777 0 0 1680674832.222222222 4096\n",
            Shell.Text($"cd {data} && stat -c '%a %u %g %.9Y %s' bin/suid empty.conf sparse.img link bin spool shared"));
        Assert.AreEqual(sparseHash, Shell.Text($"sha256sum < {data}/sparse.img"));
        var allocated = long.Parse(Shell.Text($"stat -c %b {data}/sparse.img").Trim()) * 512;
        Assert.IsLessThan(64 * 1024L, allocated, "the 10 MiB file with one 4-byte run of data is restored sparse");
    }
}
