namespace RegistryDR.Archive;

/// <summary>
/// An archive entry that could write outside its target directory, or that our writer never
/// produces, was refused. Nothing is written for the refused entry or any later one.
/// </summary>
public sealed class UnsafeArchiveException : Exception
{
    public UnsafeArchiveException(string entryName, string reason)
        // The reason can quote the archive too (a link target, a path), so it is made printable
        // as well; only the name was, and a newline in a link target reached the logs raw
        // (found by the fuzz tests).
        : base($"Archive entry '{Printable(entryName)}' is refused: {Printable(reason)}.")
    {
        EntryName = entryName;
    }

    /// <summary>The entry name exactly as the archive spelled it.</summary>
    public string EntryName { get; }

    // Names come from an untrusted archive; control characters would garble logs and terminals.
    // Bytes of a name that are not UTF-8 (carried as escapes, see Internal.SurrogateEscape) are
    // shown as \xNN too, the way ls -b would.
    internal static string Printable(string name)
    {
        var builder = new System.Text.StringBuilder(name.Length);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsControl(c))
            {
                builder.Append(c == '\0' ? "\\0" : $"\\x{(int)c:x2}");
            }
            else if (char.IsHighSurrogate(c) && i + 1 < name.Length && char.IsLowSurrogate(name[i + 1]))
            {
                builder.Append(c).Append(name[++i]);
            }
            else if (Internal.SurrogateEscape.IsEscape(c))
            {
                builder.Append($"\\x{c - '\uDC00':x2}");
            }
            else
            {
                builder.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
            }
        }

        return builder.ToString();
    }
}
