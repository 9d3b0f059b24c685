using System.Globalization;
using System.Text.Json;

namespace RegistryDR.Configuration.Internal;

/// <summary>
/// Reads the configuration file once before the JSON configuration provider does, with the same
/// leniency (comments and trailing commas allowed), to say what the provider cannot: where a
/// syntax error is (line and column, from <see cref="JsonException"/>), and where each key is,
/// so that every problem with a key names the line it is on.
/// </summary>
internal sealed class JsonConfigurationFile
{
    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    private readonly Dictionary<string, (int line, int column)> _locations;

    private JsonConfigurationFile(string path, Dictionary<string, (int, int)> locations)
    {
        Path = path;
        _locations = locations;
    }

    public string Path { get; }

    /// <summary>Reads and checks <paramref name="path"/>; throws <see cref="ConfigurationException"/> naming the file, line and column.</summary>
    public static JsonConfigurationFile Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException($"Invalid configuration:{Environment.NewLine}  Configuration file {path} cannot be read: {ex.Message}", ex);
        }
        if (bytes.AsSpan().StartsWith("\uFEFF"u8)) bytes = bytes[3..]; // the provider reads past a UTF-8 BOM too
        if (bytes.All(b => b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n'))
            throw new ConfigurationException($"Invalid configuration:{Environment.NewLine}  {path} is empty: it must hold one JSON object ({{ \"Database\": {{ ... }}, \"Store\": {{ ... }} }}).");
        var locations = new Dictionary<string, (int, int)>(StringComparer.OrdinalIgnoreCase);
        try
        {
            Scan(bytes, locations, path);
        }
        catch (JsonException ex)
        {
            var line = (ex.LineNumber ?? 0) + 1;
            var column = (ex.BytePositionInLine ?? 0) + 1;
            throw new ConfigurationException(
                $"Invalid configuration:{Environment.NewLine}  {path} is not valid JSON at line {line}, column {column}: {Reason(ex.Message)}", ex);
        }
        return new JsonConfigurationFile(path, locations);
    }

    /// <summary>Where <paramref name="key"/> (<c>Section:Key</c>, list items as <c>Section:Key:0</c>) is written, if it is in this file.</summary>
    public bool TryLocate(string key, out int line, out int column)
    {
        var found = _locations.TryGetValue(key, out var at);
        (line, column) = at;
        return found;
    }

    /// <summary>
    /// Walks every token, recording each key's configuration path (as the JSON provider builds it:
    /// property names joined with ':', array items by index) and its position. Refuses what the
    /// provider would refuse without a position: a top-level value that is not an object, and a
    /// key written twice in one object (the provider compares keys case-insensitively).
    /// </summary>
    private static void Scan(byte[] bytes, Dictionary<string, (int, int)> locations, string path)
    {
        var reader = new Utf8JsonReader(bytes, ReaderOptions);
        var lineStarts = LineStarts(bytes);
        // One frame per open object or array: its path, the next index (arrays) and the keys seen (objects).
        var stack = new Stack<(string path, bool isArray, int next, HashSet<string> keys)>();
        string? pendingName = null;
        var sawRoot = false;
        while (reader.Read())
        {
            var (line, column) = Position(lineStarts, reader.TokenStartIndex);
            switch (reader.TokenType)
            {
                case JsonTokenType.PropertyName:
                    var frame = stack.Peek();
                    var name = reader.GetString()!;
                    var keyPath = frame.path.Length == 0 ? name : frame.path + ":" + name;
                    if (!frame.keys.Add(name))
                        throw new ConfigurationException($"Invalid configuration:{Environment.NewLine}  {path} line {line}, column {column}: '{keyPath}' is written twice in the same object (keys are case-insensitive); keep one.");
                    locations.TryAdd(keyPath, (line, column));
                    pendingName = keyPath;
                    continue;
                case JsonTokenType.StartObject:
                case JsonTokenType.StartArray:
                    if (!sawRoot)
                    {
                        sawRoot = true;
                        if (reader.TokenType != JsonTokenType.StartObject)
                            throw new ConfigurationException($"Invalid configuration:{Environment.NewLine}  {path} line {line}, column {column}: the file must hold one JSON object ({{ \"Database\": {{ ... }}, \"Store\": {{ ... }} }}).");
                        stack.Push(("", false, 0, new HashSet<string>(StringComparer.OrdinalIgnoreCase)));
                        continue;
                    }
                    var own = ValuePath(stack, ref pendingName, locations, line, column);
                    stack.Push((own, reader.TokenType == JsonTokenType.StartArray, 0, new HashSet<string>(StringComparer.OrdinalIgnoreCase)));
                    continue;
                case JsonTokenType.EndObject:
                case JsonTokenType.EndArray:
                    stack.Pop();
                    continue;
                default:
                    if (!sawRoot)
                        throw new ConfigurationException($"Invalid configuration:{Environment.NewLine}  {path} line {line}, column {column}: the file must hold one JSON object ({{ \"Database\": {{ ... }}, \"Store\": {{ ... }} }}).");
                    ValuePath(stack, ref pendingName, locations, line, column);
                    continue;
            }
        }
        if (!sawRoot)
            throw new ConfigurationException($"Invalid configuration:{Environment.NewLine}  {path} is empty: it must hold one JSON object ({{ \"Database\": {{ ... }}, \"Store\": {{ ... }} }}).");
    }

    /// <summary>The path of the value that starts here: the pending property's, or the next index of the enclosing array.</summary>
    private static string ValuePath(Stack<(string path, bool isArray, int next, HashSet<string> keys)> stack, ref string? pendingName,
        Dictionary<string, (int, int)> locations, int line, int column)
    {
        var top = stack.Pop();
        string own;
        if (top.isArray)
        {
            own = (top.path.Length == 0 ? "" : top.path + ":") + top.next.ToString(CultureInfo.InvariantCulture);
            locations.TryAdd(own, (line, column));
            top.next++;
        }
        else
        {
            own = pendingName ?? top.path;
        }
        stack.Push(top);
        pendingName = null;
        return own;
    }

    private static List<int> LineStarts(byte[] bytes)
    {
        var starts = new List<int> { 0 };
        for (var i = 0; i < bytes.Length; i++)
            if (bytes[i] == (byte)'\n') starts.Add(i + 1);
        return starts;
    }

    private static (int line, int column) Position(List<int> lineStarts, long offset)
    {
        var index = lineStarts.BinarySearch((int)offset);
        if (index < 0) index = ~index - 1;
        return (index + 1, (int)offset - lineStarts[index] + 1);
    }

    /// <summary>System.Text.Json's message without its own "Path: $ | LineNumber: …" tail, which we say in our words.</summary>
    private static string Reason(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        var reason = (cut < 0 ? message : message[..cut]).Trim();
        return reason.EndsWith('.') ? reason : reason + ".";
    }
}
