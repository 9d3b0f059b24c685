using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace RegistryDR.Archive.Internal;

/// <summary>The tag of one ACL entry, with the values of the kernel's xattr format (linux/posix_acl_xattr.h).</summary>
internal enum PosixAclTag : ushort
{
    UserObj = 0x01,
    User = 0x02,
    GroupObj = 0x04,
    Group = 0x08,
    Mask = 0x10,
    Other = 0x20,
}

/// <summary>One ACL entry: tag, uid/gid for named entries (else 0), and rwx bits (4, 2, 1).</summary>
internal readonly record struct PosixAclEntry(PosixAclTag Tag, uint Id, int Permissions);

/// <summary>
/// A POSIX.1e ACL as Linux stores it in <c>system.posix_acl_access</c> / <c>system.posix_acl_default</c>,
/// converted to and from the text GNU tar and star put in the PAX records <c>SCHILY.acl.access</c>
/// and <c>SCHILY.acl.default</c> ("user::rw-\nuser:101:r--\ngroup::r--\nmask::r--\nother::---\n",
/// what <c>acl_to_text</c> prints, with numeric ids). Both directions check the rules the kernel's
/// <c>posix_acl_valid</c> enforces, so an ACL accepted here is one the kernel accepts.
/// </summary>
/// <remarks>
/// Ids are written as numbers, not names: restore goes by numeric id for owners too, and a name
/// may not exist, or mean someone else, on the restoring node. GNU tar's <c>--acls</c> reads
/// numeric ids (libacl's acl_from_text takes them).
/// </remarks>
internal sealed class PosixAcl
{
    /// <summary>The most entries one ACL can have: XATTR_SIZE_MAX (64 KiB) less the 4-byte header, 8 bytes each.</summary>
    public const int MaxEntries = (65536 - 4) / 8;

    private const uint XattrVersion = 2;
    private const uint UndefinedId = uint.MaxValue;

    private PosixAcl(List<PosixAclEntry> entries)
    {
        Entries = entries;
    }

    /// <summary>In the kernel's order: owner, named users by uid, owning group, named groups by gid, mask, other.</summary>
    public IReadOnlyList<PosixAclEntry> Entries { get; }

    /// <summary>
    /// The owning group's effective permissions (its entry limited by the mask), which is what
    /// the mode's group bits should grant when the ACL itself cannot be kept.
    /// </summary>
    public int EffectiveGroupPermissions
    {
        get
        {
            var group = Entries.First(e => e.Tag == PosixAclTag.GroupObj).Permissions;
            return Entries.FirstOrDefault(e => e.Tag == PosixAclTag.Mask) is { Tag: PosixAclTag.Mask } mask ? group & mask.Permissions : group;
        }
    }

    /// <summary>Parses the kernel's binary form; returns null with a reason when it is not a valid ACL.</summary>
    public static PosixAcl? FromXattr(ReadOnlySpan<byte> value, out string? error)
    {
        if (value.Length < 4 || (value.Length - 4) % 8 != 0 || BinaryPrimitives.ReadUInt32LittleEndian(value) != XattrVersion)
        {
            error = $"it is not a version-{XattrVersion} ACL of whole entries ({value.Length} bytes)";
            return null;
        }

        var entries = new List<PosixAclEntry>((value.Length - 4) / 8);
        for (var offset = 4; offset < value.Length; offset += 8)
        {
            var tag = (PosixAclTag)BinaryPrimitives.ReadUInt16LittleEndian(value[offset..]);
            var permissions = BinaryPrimitives.ReadUInt16LittleEndian(value[(offset + 2)..]);
            var id = BinaryPrimitives.ReadUInt32LittleEndian(value[(offset + 4)..]);
            if (permissions > 7)
            {
                error = $"an entry has permission bits 0x{permissions:x}";
                return null;
            }

            entries.Add(new PosixAclEntry(tag, IsNamed(tag) ? id : 0, permissions));
        }

        error = Validate(entries);
        return error is null ? new PosixAcl(entries) : null;
    }

    /// <summary>
    /// Parses ACL text: entries "tag:qualifier:perms" separated by newlines or commas, tags
    /// user/u, group/g, mask/m, other/o, numeric qualifiers, perms "rwx" with '-' for a missing
    /// bit. Returns null with a reason when the text is not a valid ACL.
    /// </summary>
    public static PosixAcl? Parse(string text, out string? error)
    {
        var entries = new List<PosixAclEntry>();
        foreach (var raw in text.Split(['\n', ',']))
        {
            if (raw.Length == 0)
            {
                continue;
            }

            if (entries.Count == MaxEntries)
            {
                error = $"it has more than {MaxEntries} entries";
                return null;
            }

            var fields = raw.Split(':');
            if (fields.Length != 3)
            {
                error = $"entry '{raw}' is not 'tag:qualifier:permissions'";
                return null;
            }

            PosixAclTag? tag = fields[0] switch
            {
                "user" or "u" => fields[1].Length == 0 ? PosixAclTag.UserObj : PosixAclTag.User,
                "group" or "g" => fields[1].Length == 0 ? PosixAclTag.GroupObj : PosixAclTag.Group,
                "mask" or "m" => PosixAclTag.Mask,
                "other" or "o" => PosixAclTag.Other,
                _ => null,
            };
            if (tag is null)
            {
                error = $"entry '{raw}' has an unknown tag";
                return null;
            }

            uint id = 0;
            if (IsNamed(tag.Value) && (!fields[1].All(char.IsAsciiDigit) || !uint.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out id) || id == UndefinedId))
            {
                error = $"entry '{raw}' does not name a numeric uid or gid";
                return null;
            }

            if (!IsNamed(tag.Value) && fields[1].Length != 0)
            {
                error = $"entry '{raw}' must not name a uid or gid";
                return null;
            }

            var perms = fields[2];
            if (perms.Length != 3 || perms[0] is not ('r' or '-') || perms[1] is not ('w' or '-') || perms[2] is not ('x' or '-'))
            {
                error = $"entry '{raw}' has permissions other than 'rwx' with '-' for a missing bit";
                return null;
            }

            entries.Add(new PosixAclEntry(tag.Value, id, (perms[0] == 'r' ? 4 : 0) | (perms[1] == 'w' ? 2 : 0) | (perms[2] == 'x' ? 1 : 0)));
        }

        error = Validate(entries);
        return error is null ? new PosixAcl(entries) : null;
    }

    /// <summary>The kernel's binary form, for lsetxattr.</summary>
    public byte[] ToXattr()
    {
        var value = new byte[4 + (8 * Entries.Count)];
        BinaryPrimitives.WriteUInt32LittleEndian(value, XattrVersion);
        for (var i = 0; i < Entries.Count; i++)
        {
            var entry = Entries[i];
            var offset = 4 + (8 * i);
            BinaryPrimitives.WriteUInt16LittleEndian(value.AsSpan(offset), (ushort)entry.Tag);
            BinaryPrimitives.WriteUInt16LittleEndian(value.AsSpan(offset + 2), (ushort)entry.Permissions);
            BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(offset + 4), IsNamed(entry.Tag) ? entry.Id : UndefinedId);
        }

        return value;
    }

    /// <summary>The text for SCHILY.acl.*: one entry per line, numeric ids, as getfacl -n prints them.</summary>
    public string ToText()
    {
        var text = new StringBuilder();
        foreach (var entry in Entries)
        {
            text.Append(entry.Tag switch
            {
                PosixAclTag.UserObj or PosixAclTag.User => "user:",
                PosixAclTag.GroupObj or PosixAclTag.Group => "group:",
                PosixAclTag.Mask => "mask:",
                _ => "other:",
            });
            if (IsNamed(entry.Tag))
            {
                text.Append(entry.Id.ToString(CultureInfo.InvariantCulture));
            }

            text.Append(':')
                .Append((entry.Permissions & 4) != 0 ? 'r' : '-')
                .Append((entry.Permissions & 2) != 0 ? 'w' : '-')
                .Append((entry.Permissions & 1) != 0 ? 'x' : '-')
                .Append('\n');
        }

        return text.ToString();
    }

    private static bool IsNamed(PosixAclTag tag) => tag is PosixAclTag.User or PosixAclTag.Group;

    /// <summary>
    /// The kernel's rules (posix_acl_valid): exactly one owner, owning-group and other entry, at
    /// most one mask and one whenever there are named entries, no uid or gid named twice. The
    /// entries are then sorted into the order the kernel requires.
    /// </summary>
    private static string? Validate(List<PosixAclEntry> entries)
    {
        if (entries.Count > MaxEntries)
        {
            return $"it has more than {MaxEntries} entries";
        }

        foreach (var tag in new[] { PosixAclTag.UserObj, PosixAclTag.GroupObj, PosixAclTag.Other })
        {
            if (entries.Count(e => e.Tag == tag) != 1)
            {
                return $"it must have exactly one {Name(tag)} entry";
            }
        }

        var masks = entries.Count(e => e.Tag == PosixAclTag.Mask);
        if (entries.Any(e => !Enum.IsDefined(e.Tag)))
        {
            return "it has an entry of unknown type";
        }

        if (masks > 1 || (masks == 0 && entries.Any(e => IsNamed(e.Tag))))
        {
            return "it must have one mask entry when it names users or groups, and never more than one";
        }

        if (entries.Where(e => IsNamed(e.Tag)).GroupBy(e => (e.Tag, e.Id)).Any(g => g.Count() > 1))
        {
            return "it names the same uid or gid twice";
        }

        entries.Sort((a, b) => a.Tag != b.Tag ? a.Tag.CompareTo(b.Tag) : a.Id.CompareTo(b.Id));
        return null;
    }

    private static string Name(PosixAclTag tag) => tag switch
    {
        PosixAclTag.UserObj => "owner ('user::')",
        PosixAclTag.GroupObj => "owning group ('group::')",
        _ => "other ('other::')",
    };
}
