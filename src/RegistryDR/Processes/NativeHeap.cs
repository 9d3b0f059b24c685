using System.Runtime.InteropServices;

namespace RegistryDR.Processes;

/// <summary>
/// Keeps glibc's malloc from holding on to memory the process no longer uses.
/// </summary>
/// <remarks>
/// A backup compresses every block range in its own zlib stream on whichever thread-pool thread
/// runs it. With glibc's defaults each of those threads may get its own malloc arena (up to 8 per
/// core), and after the first large free the mmap threshold rises to 32 MiB, so the compressors'
/// windows and hash tables (a few hundred KiB each) come from arenas that are rarely trimmed. On
/// the 4 GiB benchmark that kept about 20 MiB more resident than the work needed, and more the
/// longer the run (docs/performance.md, "Memory"). Two arenas and a fixed 128 KiB mmap threshold
/// give every large native allocation back to the kernel when it is freed. Set at start-up, before
/// any work, by the CLI; the runtime's own arenas created earlier are left as they are.
/// </remarks>
internal static partial class NativeHeap
{
    // <malloc.h>
    private const int MallocMmapThreshold = -3;
    private const int MallocArenaMax = -8;

    public const int ArenaMax = 2;
    public const int MmapThresholdBytes = 128 * 1024;

    /// <summary>
    /// Applies the settings; false when the C library is not glibc (musl has no such knobs and
    /// ignores them) or refused them. Never throws: this is tuning, not correctness.
    /// </summary>
    public static bool Tune()
    {
        try
        {
            return Mallopt(MallocArenaMax, ArenaMax) == 1 && Mallopt(MallocMmapThreshold, MmapThresholdBytes) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int param, int value);
}
