namespace RegistryDR.Archive.Internal;

/// <summary>
/// uid/gid to name lookups for the tar header's informational uname/gname fields. Files are read
/// once per archive; accounts that only exist in LDAP/SSSD simply get an empty name, which is
/// harmless because restore goes by numeric id.
/// </summary>
internal sealed class AccountNames
{
    private readonly Dictionary<uint, string> _users;
    private readonly Dictionary<uint, string> _groups;

    private AccountNames(Dictionary<uint, string> users, Dictionary<uint, string> groups)
    {
        _users = users;
        _groups = groups;
    }

    public static AccountNames Load(string passwdPath = "/etc/passwd", string groupPath = "/etc/group") =>
        new(ReadIdFile(passwdPath), ReadIdFile(groupPath));

    public string UserName(uint uid) => _users.GetValueOrDefault(uid, string.Empty);

    public string GroupName(uint gid) => _groups.GetValueOrDefault(gid, string.Empty);

    // Both files are "name:password:id:..." so one parser serves; the first name for an id wins,
    // as it does for getpwuid.
    private static Dictionary<uint, string> ReadIdFile(string path)
    {
        var result = new Dictionary<uint, string>();
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return result;
        }

        foreach (var line in lines)
        {
            var fields = line.Split(':');
            if (fields.Length >= 3 && fields[0].Length > 0 && !line.StartsWith('#') && uint.TryParse(fields[2], out var id))
            {
                result.TryAdd(id, fields[0]);
            }
        }

        return result;
    }
}
