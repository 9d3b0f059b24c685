using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace RegistryDR.Configuration.Internal;

/// <summary>
/// Reads an <see cref="IConfiguration"/> into an options object by walking the configuration
/// against the options' public settable properties, collecting every problem instead of stopping
/// at the first: an unknown key (with the closest setting, if one is close), a value that does
/// not parse as its setting's type (with the form it must take, never a .NET type name), a value
/// where a section is expected and the reverse. Used instead of ConfigurationBinder because the
/// binder stops at the first problem and words it for developers (see docs/decisions.md).
/// </summary>
/// <remarks>
/// Lists replace the default rather than appending to it (the binder appends to a list
/// initialiser). Property names match case-insensitively, like the binder.
/// </remarks>
internal static class OptionsReader
{
    /// <summary>One problem, against the configuration key it concerns (<c>Section:Key</c>, as the configuration spells it).</summary>
    public sealed record Problem(string Key, string Message);

    /// <summary>Fills <paramref name="target"/> from <paramref name="configuration"/>; a key that fails leaves its default.</summary>
    /// <param name="name">Turns a configuration key into the name the operator wrote (a file key, an environment variable).</param>
    public static List<Problem> Read(IConfiguration configuration, object target, Func<string, string> name)
    {
        var problems = new List<Problem>();
        ReadSection(configuration.GetChildren(), target, parentPath: null, name, problems);
        return problems;
    }

    private static void ReadSection(IEnumerable<IConfigurationSection> children, object target, string? parentPath, Func<string, string> name, List<Problem> problems)
    {
        var properties = Settable(target.GetType());
        foreach (var child in children)
        {
            var property = properties.FirstOrDefault(p => string.Equals(p.Name, child.Key, StringComparison.OrdinalIgnoreCase));
            if (property is null)
            {
                problems.Add(new(child.Path, UnknownKey(child, parentPath, properties, name)));
                continue;
            }
            var hasChildren = child.GetChildren().Any();
            var type = property.PropertyType;
            if (IsList(type))
            {
                if (!hasChildren && !string.IsNullOrEmpty(child.Value))
                {
                    problems.Add(new(child.Path, $"{name(child.Path)} is '{child.Value}'; expected {Form(property, child.Path)}{ListHint(child.Path, name)}."));
                    continue;
                }
                var list = new List<string>();
                var ok = true;
                foreach (var item in child.GetChildren().OrderBy(c => int.TryParse(c.Key, NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : int.MaxValue))
                {
                    if (!int.TryParse(item.Key, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                    {
                        problems.Add(new(item.Path, $"{name(item.Path)} is not a list item: {name(child.Path)} is {Form(property, child.Path)}."));
                        ok = false;
                    }
                    else if (item.GetChildren().Any())
                    {
                        problems.Add(new(item.Path, $"{name(item.Path)} is a section, not a string: {name(child.Path)} is {Form(property, child.Path)}."));
                        ok = false;
                    }
                    else
                    {
                        list.Add(item.Value ?? "");
                    }
                }
                if (ok) property.SetValue(target, list);
            }
            else if (IsSection(type))
            {
                if (!hasChildren)
                {
                    // An empty section ({} in JSON) has a null value: nothing to set.
                    if (!string.IsNullOrEmpty(child.Value))
                        problems.Add(new(child.Path, $"{name(child.Path)} is '{child.Value}'; expected {Form(property, child.Path)}."));
                    continue;
                }
                var section = property.GetValue(target) ?? Activator.CreateInstance(type)!;
                ReadSection(child.GetChildren(), section, child.Path, name, problems);
                property.SetValue(target, section);
            }
            else if (hasChildren)
            {
                problems.Add(new(child.Path, $"{name(child.Path)} is a section (with {string.Join(", ", child.GetChildren().Select(c => c.Key))}); expected {Form(property, child.Path)}."));
            }
            else if (TryParse(property, child.Value, out var value))
            {
                property.SetValue(target, value);
            }
            else
            {
                var shown = child.Value is null ? "empty" : $"'{child.Value}'";
                problems.Add(new(child.Path, $"{name(child.Path)} is {shown}; expected {Form(property, child.Path)}."));
            }
        }
    }

    /// <summary>The public properties with a public setter: the settings of a section.</summary>
    public static IReadOnlyList<PropertyInfo> Settable(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod is { IsPublic: true }).ToList();

    private static bool IsList(Type type) => type == typeof(List<string>);

    private static bool IsSection(Type type) =>
        type.IsClass && type != typeof(string) && !IsList(type);

    private static string UnknownKey(IConfigurationSection child, string? parentPath, IReadOnlyList<PropertyInfo> properties, Func<string, string> name)
    {
        var what = parentPath is null ? "section" : "setting";
        var suggestion = Closest(child.Key, properties.Select(p => p.Name));
        if (suggestion is not null)
        {
            var suggested = parentPath is null ? suggestion : parentPath + ":" + suggestion;
            // Spelled the way the mistake was: a variable for a variable, a key for a key.
            var written = name(child.Path);
            var suggestedName = written.StartsWith(RegistryDrConfiguration.EnvironmentPrefix, StringComparison.OrdinalIgnoreCase)
                ? RegistryDrConfiguration.EnvironmentPrefix + suggested.Replace(":", "__", StringComparison.Ordinal)
                : suggested;
            return $"{written} is not a {what}; did you mean {suggestedName}?";
        }
        var known = string.Join(", ", properties.Select(p => p.Name));
        return parentPath is null
            ? $"{name(child.Path)} is not a {what}; the sections are {known}."
            : $"{name(child.Path)} is not a {what}; {parentPath}'s settings are {known}.";
    }

    /// <summary>The candidate nearest to <paramref name="key"/> (case-insensitive edit distance, transpositions counted once), if near enough to be a typo.</summary>
    internal static string? Closest(string key, IEnumerable<string> candidates)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in candidates)
        {
            var d = Distance(key.ToLowerInvariant(), candidate.ToLowerInvariant());
            if (d < bestDistance) (best, bestDistance) = (candidate, d);
        }
        // Two edits, or a third of the name for long ones: "Databse", "PaswordFile", "Retenton".
        return best is not null && bestDistance <= Math.Max(2, key.Length / 3) ? best : null;
    }

    /// <summary>Optimal string alignment distance (Levenshtein plus adjacent transpositions).</summary>
    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (var j = 0; j <= b.Length; j++) d[0, j] = j;
        for (var i = 1; i <= a.Length; i++)
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }

    private static bool TryParse(PropertyInfo property, string? text, out object? value)
    {
        var type = property.PropertyType;
        var underlying = Nullable.GetUnderlyingType(type);
        value = null;
        if (type == typeof(string))
        {
            value = text;
            return true;
        }
        if (string.IsNullOrEmpty(text)) return underlying is not null;
        var t = underlying ?? type;
        var invariant = CultureInfo.InvariantCulture;
        if (t == typeof(int) && int.TryParse(text, NumberStyles.AllowLeadingSign, invariant, out var i)) value = i;
        else if (t == typeof(double) && double.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, invariant, out var d)) value = d;
        else if (t == typeof(bool) && bool.TryParse(text, out var b)) value = b;
        else if (t == typeof(TimeSpan) && TimeSpan.TryParse(text, invariant, out var ts)) value = ts;
        else if (t.IsEnum && !char.IsAsciiDigit(text[0]) && text[0] != '-' && Enum.TryParse(t, text, ignoreCase: true, out var e)) value = e;
        return value is not null;
    }

    /// <summary>
    /// The form a setting's value must take, in the operator's words: "a number between 1 and
    /// 65535", "a duration hh:mm:ss", "one of None, S3, Kms", "a list of strings, e.g. [...]".
    /// Throws <see cref="NotSupportedException"/> for a property type this reader cannot read
    /// (a test walks every option so that a new one cannot slip through).
    /// </summary>
    public static string Form(PropertyInfo property, string? key = null)
    {
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        var range = property.GetCustomAttribute<RangeAttribute>();
        var between = range is null ? "" : $" between {range.Minimum} and {range.Maximum}";
        if (type == typeof(string)) return "a string";
        if (type == typeof(int)) return range is null ? "a whole number" : "a number" + between;
        if (type == typeof(double)) return "a number" + between;
        if (type == typeof(bool)) return "true or false";
        if (type == typeof(TimeSpan)) return "a duration hh:mm:ss (d.hh:mm:ss for days)" + between + ", e.g. \"00:05:00\"";
        if (type.IsEnum) return "one of " + string.Join(", ", Enum.GetNames(type));
        if (IsList(type)) return "a list of strings, e.g. " + ListExample(key);
        if (IsSection(type)) return $"a section of settings ({string.Join(", ", Settable(type).Select(p => p.Name))})";
        throw new NotSupportedException($"{property.DeclaringType?.Name}.{property.Name}: no configuration form for {type}.");
    }

    private static string ListExample(string? key) => key?.ToLowerInvariant() switch
    {
        "config:directories" => "[\"/var/local/dtr\"]",
        "config:exclude" => "[\"*.sock\", \"tmp/**\"]",
        "registry:stopcommand" => "[\"systemctl\", \"stop\", \"dtr\"]",
        "registry:startcommand" => "[\"systemctl\", \"start\", \"dtr\"]",
        "monitoring:urls" => "[\"http://0.0.0.0:8080\"]",
        _ => "[\"first\", \"second\"]",
    };

    private static string ListHint(string key, Func<string, string> name)
    {
        var written = name(key);
        return written.StartsWith(RegistryDrConfiguration.EnvironmentPrefix, StringComparison.Ordinal)
            ? $" (as environment variables, one per item: {written}__0, {written}__1, ...)"
            : "";
    }
}
