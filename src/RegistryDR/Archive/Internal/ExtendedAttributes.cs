using System.Buffers.Binary;

namespace RegistryDR.Archive.Internal;

/// <summary>
/// Extended-attribute rules shared by the writer (which must never archive what the reader
/// would refuse, and says so instead) and the reader (which must refuse anything the kernel
/// would reject, so that validation predicts extraction), and the judgement of a failed
/// lsetxattr at restore.
/// </summary>
/// <remarks>
/// Stored as GNU tar and star store them: one PAX record <c>SCHILY.xattr.&lt;name&gt;=&lt;bytes&gt;</c>
/// per attribute; POSIX ACLs as the text records <c>SCHILY.acl.access</c> / <c>SCHILY.acl.default</c>
/// instead of their binary xattrs (see <see cref="PosixAcl"/>).
/// </remarks>
internal static class ExtendedAttributes
{
    public const string AccessAcl = "system.posix_acl_access";
    public const string DefaultAcl = "system.posix_acl_default";
    public const string Capability = "security.capability";

    /// <summary>XATTR_NAME_MAX: the longest attribute name, in bytes.</summary>
    public const int MaxNameBytes = 255;

    /// <summary>XATTR_SIZE_MAX: the largest attribute value, in bytes.</summary>
    public const int MaxValueBytes = 65536;

    private static readonly string[] Namespaces = ["user.", "trusted.", "security.", "system."];

    /// <summary>
    /// Why the attribute cannot be archived or restored on an entry of this kind, or null when it
    /// can: a name outside Linux's namespaces or over 255 bytes, a value over 64 KiB, a user.*
    /// attribute on a symbolic link (the kernel allows them on files and directories only), an
    /// ACL xattr (ACLs travel as SCHILY.acl.*), or a security.capability that is not a v2/v3
    /// capability set on a regular file.
    /// </summary>
    public static string? Refusal(string name, ReadOnlySpan<byte> value, bool isSymlink, bool isRegularFile)
    {
        if (name.Contains('\0'))
        {
            return "its name contains a NUL character";
        }

        if (!Namespaces.Any(n => name.StartsWith(n, StringComparison.Ordinal) && name.Length > n.Length))
        {
            return $"its name is not in one of Linux's namespaces ({string.Join(", ", Namespaces.Select(n => n + "*"))})";
        }

        if (SurrogateEscape.GetByteCount(name) > MaxNameBytes)
        {
            return $"its name is longer than the {MaxNameBytes} bytes Linux allows";
        }

        if (value.Length > MaxValueBytes)
        {
            return $"its value is longer than the {MaxValueBytes} bytes Linux allows";
        }

        if (name is AccessAcl or DefaultAcl)
        {
            return "ACLs are stored as SCHILY.acl.access / SCHILY.acl.default records, not as raw attributes";
        }

        if (isSymlink && name.StartsWith("user.", StringComparison.Ordinal))
        {
            return "Linux does not allow user.* attributes on a symbolic link";
        }

        if (name == Capability && (!isRegularFile || !IsCapabilitySet(value)))
        {
            return "a security.capability attribute must be a version 2 or 3 capability set on a regular file";
        }

        return null;
    }

    /// <summary>"user.*", "trusted.*", "security.*", "system.*", or "security.capability" itself: the unit warnings count by.</summary>
    public static string KindOf(string name)
    {
        if (name == Capability)
        {
            return Capability;
        }

        var dot = name.IndexOf('.', StringComparison.Ordinal);
        return (dot < 0 ? name : name[..dot]) + ".*";
    }

    /// <summary>
    /// What a failed lsetxattr means for the restore: an omission to report once per kind
    /// (the target filesystem does not support the namespace, only root may set it, the kernel
    /// or a security module refused the value, no room), or null for a failure that must stop
    /// the restore (an I/O error, say).
    /// </summary>
    public static string? OmissionFor(string name, int errno, bool privileged) => errno switch
    {
        UnixFileSystem.Eopnotsupp => $"{KindOf(name)} extended attribute (the target filesystem does not support it)",
        UnixFileSystem.Eperm or UnixFileSystem.Eacces when !privileged => $"{KindOf(name)} extended attribute (only root may set it)",
        UnixFileSystem.Eperm or UnixFileSystem.Eacces => $"{KindOf(name)} extended attribute (the kernel refused it: permission denied)",
        UnixFileSystem.Einval => $"{KindOf(name)} extended attribute (the kernel refused its value)",
        UnixFileSystem.Enospc or UnixFileSystem.E2big or UnixFileSystem.Edquot or UnixFileSystem.Erange => $"{KindOf(name)} extended attribute (no room for it on the target filesystem)",
        _ => null,
    };

    /// <summary>
    /// VFS_CAP_REVISION_2 (20 bytes) or VFS_CAP_REVISION_3 (24 bytes, with a root uid): the only
    /// forms the kernel accepts (cap_convert_nscap). The low bit of the magic is the effective flag.
    /// </summary>
    private static bool IsCapabilitySet(ReadOnlySpan<byte> value)
    {
        if (value.Length < 4)
        {
            return false;
        }

        var revision = BinaryPrimitives.ReadUInt32LittleEndian(value) & ~1u;
        return (value.Length == 20 && revision == 0x0200_0000)
            || (value.Length == 24 && revision == 0x0300_0000 && BinaryPrimitives.ReadUInt32LittleEndian(value[20..]) != uint.MaxValue);
    }
}
