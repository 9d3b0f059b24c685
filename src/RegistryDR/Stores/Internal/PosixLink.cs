using System.Runtime.InteropServices;

namespace RegistryDR.Stores.Internal;

/// <summary>link(2): the one create-if-absent that is atomic on local filesystems and NFS alike.</summary>
internal static partial class PosixLink
{
    private const int Eexist = 17;

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeLink(string existing, string created);

    /// <summary>True when <paramref name="created"/> was created; false when it already existed.</summary>
    public static bool TryLink(string existing, string created)
    {
        if (NativeLink(existing, created) == 0) return true;
        var errno = Marshal.GetLastPInvokeError();
        if (errno == Eexist) return false;
        throw new IOException($"Could not create '{created}': {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
    }
}
