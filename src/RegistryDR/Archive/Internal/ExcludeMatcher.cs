namespace RegistryDR.Archive.Internal;

/// <summary>
/// Exclude globs with .gitignore-like meaning, matched against '/'-separated paths relative to
/// a root: '*' and '?' stay within one segment, a "**" segment spans any number of segments, a
/// pattern without '/' matches the basename at any depth, a leading '/' anchors to the root,
/// a trailing '/' matches directories only, and a trailing "/**" matches what is inside a
/// directory but not the directory itself.
/// </summary>
internal sealed class ExcludeMatcher
{
    private readonly List<Pattern> _patterns = [];

    public ExcludeMatcher(IReadOnlyList<string> globs)
    {
        ArgumentNullException.ThrowIfNull(globs);
        foreach (var glob in globs)
        {
            if (Pattern.TryParse(glob, out var pattern))
            {
                _patterns.Add(pattern);
            }
        }
    }

    public bool IsExcluded(string relativePath, bool isDirectory)
    {
        if (_patterns.Count == 0 || relativePath.Length == 0)
        {
            return false;
        }

        var segments = relativePath.Split('/');
        foreach (var pattern in _patterns)
        {
            if ((isDirectory || !pattern.DirectoryOnly) && MatchSegments(pattern.Segments, 0, segments, 0))
            {
                return true;
            }
        }

        return false;
    }

    private static bool MatchSegments(string[] pattern, int p, string[] path, int s)
    {
        while (p < pattern.Length)
        {
            if (pattern[p] == "**")
            {
                for (var skip = s; skip <= path.Length; skip++)
                {
                    if (MatchSegments(pattern, p + 1, path, skip))
                    {
                        return true;
                    }
                }

                return false;
            }

            if (s == path.Length || !MatchSegment(pattern[p], path[s]))
            {
                return false;
            }

            p++;
            s++;
        }

        return s == path.Length;
    }

    /// <summary>'*' and '?' within one name, with the usual backtrack-to-last-star matching.</summary>
    private static bool MatchSegment(string pattern, string name)
    {
        int p = 0, n = 0, starP = -1, starN = 0;
        while (n < name.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == name[n]))
            {
                p++;
                n++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                starP = p++;
                starN = n;
            }
            else if (starP >= 0)
            {
                p = starP + 1;
                n = ++starN;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }

    private readonly record struct Pattern(string[] Segments, bool DirectoryOnly)
    {
        public static bool TryParse(string glob, out Pattern pattern)
        {
            pattern = default;
            var text = glob?.Trim() ?? string.Empty;
            var directoryOnly = text.EndsWith('/');
            text = text.Trim('/');
            if (text.Length == 0)
            {
                return false;
            }

            var anchored = text.Contains('/') || glob!.TrimStart().StartsWith('/');
            var segments = new List<string>();
            if (!anchored)
            {
                segments.Add("**");
            }

            foreach (var segment in text.Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                // "a**b" has no sensible multi-segment meaning; treat it like "a*b".
                var normalized = segment.Contains("**") && segment != "**" ? CollapseStars(segment) : segment;
                if (normalized == "**" && segments.Count > 0 && segments[^1] == "**")
                {
                    continue;
                }

                segments.Add(normalized);
            }

            // "dir/**" means everything below dir, not dir itself, so demand at least one segment.
            if (segments.Count > 1 && segments[^1] == "**")
            {
                segments.Insert(segments.Count - 1, "*");
            }

            pattern = new Pattern([.. segments], directoryOnly);
            return true;
        }

        private static string CollapseStars(string segment)
        {
            while (segment.Contains("**"))
            {
                segment = segment.Replace("**", "*");
            }

            return segment;
        }
    }
}
