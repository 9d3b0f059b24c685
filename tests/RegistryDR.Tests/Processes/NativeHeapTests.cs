using System.Runtime.InteropServices;
using RegistryDR.Processes;

namespace RegistryDR.Tests.Processes;

[TestClass]
public sealed class NativeHeapTests
{
    [TestMethod]
    [DoNotParallelize] // Reads the whole process's resident memory: another test's allocations would blur it.
    public void Tune_IsAcceptedByGlibc_AndLargeFreedBlocksLeaveTheProcess()
    {
        // These machines run Debian (glibc); mallopt answers 1 for each accepted setting.
        Assert.IsTrue(NativeHeap.Tune(), "glibc should accept M_ARENA_MAX and M_MMAP_THRESHOLD");
        Assert.IsTrue(NativeHeap.Tune(), "tuning twice (the CLI in a test host) is harmless");

        // glibc's default would now raise its mmap threshold to 4 MiB (a freed mapped chunk sets
        // it), and the 256 KiB blocks below (zlib-sized) would come from an arena and stay there,
        // held by the small block allocated after them. With the fixed 128 KiB threshold each
        // block is its own mapping, and freeing the burst gives the memory back at once.
        Marshal.FreeHGlobal(Touch(Marshal.AllocHGlobal(4 << 20), 4 << 20));
        var before = RssAnonKiB();
        var blocks = new nint[256];
        for (var i = 0; i < blocks.Length; i++) blocks[i] = Touch(Marshal.AllocHGlobal(256 << 10), 256 << 10);
        var pin = Marshal.AllocHGlobal(64);
        var during = RssAnonKiB();
        foreach (var b in blocks) Marshal.FreeHGlobal(b);
        var after = RssAnonKiB();
        Marshal.FreeHGlobal(pin);

        Assert.IsGreaterThan(before + 48 * 1024, during, "the blocks were touched, so they were resident");
        Assert.IsLessThan(before + 16 * 1024, after, $"freed blocks still resident: before {before} KiB, during {during} KiB, after {after} KiB");
    }

    private static nint Touch(nint block, int length)
    {
        for (var page = 0; page < length; page += 4096) Marshal.WriteByte(block, page, 1);
        return block;
    }

    private static long RssAnonKiB()
    {
        var line = File.ReadLines("/proc/self/status").Single(l => l.StartsWith("RssAnon:", StringComparison.Ordinal));
        return long.Parse(line["RssAnon:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
    }
}
