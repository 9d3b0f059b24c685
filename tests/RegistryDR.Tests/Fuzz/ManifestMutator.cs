using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace RegistryDR.Tests.Fuzz;

/// <summary>
/// Turns a valid manifest into a hostile one: 1 to 4 mutations of its JSON tree (wrong types,
/// missing, null and extra fields, hostile keys, sizes, hashes, ids, paths, duplicated and
/// dropped artifacts) and sometimes a mutation of the encoded bytes (truncation, invalid UTF-8,
/// deep nesting, duplicate keys, non-JSON literals).
/// </summary>
internal sealed class ManifestMutator
{
    /// <summary>A string value that is swapped for raw JSON text after serialization.</summary>
    private const string RawMarker = "\u0001raw:";

    private static readonly string LongString = new('x', 20_000);

    private readonly Random _random;
    private readonly string _backupId;
    private readonly List<string> _raw = [];

    public ManifestMutator(Random random, string backupId)
    {
        _random = random;
        _backupId = backupId;
    }

    public List<string> Log { get; } = [];

    public byte[] Mutate(string validJson)
    {
        var root = JsonNode.Parse(validJson)!;
        var count = 1 + _random.Next(_random.Chance(0.7) ? 2 : 4);
        for (var i = 0; i < count; i++)
        {
            root = MutateTree(root);
        }

        var text = root?.ToJsonString() ?? "null";
        for (var i = 0; i < _raw.Count; i++)
        {
            text = text.Replace(Quote(RawMarker + i.ToString(CultureInfo.InvariantCulture)), _raw[i], StringComparison.Ordinal);
        }

        var bytes = Encoding.UTF8.GetBytes(text);
        return _random.Chance(0.25) ? MutateBytes(bytes) : bytes;
    }

    private static string Quote(string value) => JsonValue.Create(value).ToJsonString();

    private JsonNode? MutateTree(JsonNode? root)
    {
        var obj = root as JsonObject;
        switch (_random.Next(12))
        {
            case 0:
                return ReplaceAnyNode(root);
            case 1 when obj is not null:
                RemoveAnyProperty(obj);
                return root;
            case 2 when obj is not null:
                AddProperty(obj);
                return root;
            case 3 or 4 when Property(obj, "artifacts") is JsonArray { Count: > 0 } artifacts:
                MutateArtifact(artifacts);
                return root;
            case 5 when obj is not null:
                MutateArray(obj);
                return root;
            case 6 when Property(obj, "configDirectories") is JsonArray directories && directories.Count > 0:
                MutateConfigDirectory(directories);
                return root;
            case 7 when obj is not null:
                Set(obj, "backupId", PickNode([
                    "20240506T070809Z-ffffff", _backupId.ToUpperInvariant(), _backupId + " ", " " + _backupId, _backupId[..^1], _backupId + "/..", "../" + _backupId,
                    _backupId + "\0", "", null, 20240506, Raw("\"" + _backupId.Replace("-", "\\u002d", StringComparison.Ordinal) + "\""), _backupId]));
                return root;
            case 8 when obj is not null:
                Set(obj, "formatVersion", PickNode([0, 2, -1, "1", 1.0, null, int.MaxValue, Raw("1.0"), Raw("1e0"), Raw("2147483648"), Raw("1e400"), Raw("-0"), Raw("01"), true]));
                return root;
            case 9 when obj is not null:
                Set(obj, _random.Pick(["startedAt", "completedAt"]), PickNode([
                    "not a date", "2024-13-45T25:61:61Z", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-14:00", "0001-01-01T00:00:00+14:00", "", 1714979289, null, "2024-05-06", "2024-05-06T07:08:09.123456789012Z"]));
                return root;
            case 10 when obj is not null:
                MutateFingerprint(obj);
                return root;
            case 11 when Property(obj, "artifacts") is JsonArray all:
                // Many artifacts with enormous sizes: each one is valid, their sum is not a long.
                all.Add(Artifact("extra", _backupId, long.MaxValue));
                all.Add(Artifact("extra2", _backupId, long.MaxValue));
                Log.Add("added two long.MaxValue-sized artifacts");
                return root;
            default:
                return ReplaceAnyNode(root);
        }
    }

    private JsonNode? ReplaceAnyNode(JsonNode? root)
    {
        var nodes = new List<(JsonNode? Parent, string? Property, int Index, string Path)> { (null, null, -1, "$") };
        Collect(root, "$", nodes);
        var (parent, property, index, path) = _random.Pick(nodes);
        var value = WrongValue();
        Log.Add($"replaced {path} with {Describe(value)}");
        switch (parent)
        {
            case null:
                return value;
            case JsonObject o:
                o[property!] = value;
                break;
            case JsonArray a:
                a[index] = value;
                break;
        }

        return root;
    }

    private static void Collect(JsonNode? node, string path, List<(JsonNode?, string?, int, string)> nodes)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (key, child) in o.ToList())
                {
                    nodes.Add((o, key, -1, path + "." + key));
                    Collect(child, path + "." + key, nodes);
                }

                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                {
                    nodes.Add((a, null, i, $"{path}[{i}]"));
                    Collect(a[i], $"{path}[{i}]", nodes);
                }

                break;
        }
    }

    private void RemoveAnyProperty(JsonObject root)
    {
        var objects = new List<(JsonObject, string)>();
        void Walk(JsonNode? node, string path)
        {
            if (node is JsonObject o)
            {
                objects.Add((o, path));
                foreach (var (key, child) in o.ToList())
                {
                    Walk(child, path + "." + key);
                }
            }
            else if (node is JsonArray a)
            {
                for (var i = 0; i < a.Count; i++)
                {
                    Walk(a[i], $"{path}[{i}]");
                }
            }
        }

        Walk(root, "$");
        var (target, where) = _random.Pick(objects);
        if (target.Count == 0)
        {
            return;
        }

        var name = _random.Pick(target.Select(p => p.Key).ToList());
        target.Remove(name);
        Log.Add($"removed {where}.{name}");
    }

    private void AddProperty(JsonObject root)
    {
        var target = _random.Chance(0.6) ? root : root["artifacts"] is JsonArray { Count: > 0 } a && a[0] is JsonObject first ? first : root;
        var name = _random.Pick(["", "$id", "$ref", "$type", "$values", "__proto__", "extra", "Artifacts", "BACKUPID", "totalSize", "\u0000", "ünï", new string('k', 1000)]);
        if (target.ContainsKey(name))
        {
            return;
        }

        var value = WrongValue();
        target[name] = value;
        Log.Add($"added property '{Fuzz.Printable(name, 40)}' = {Describe(value)}");
    }

    private void MutateArtifact(JsonArray artifacts)
    {
        var index = _random.Next(artifacts.Count);
        if (artifacts[index] is not JsonObject artifact)
        {
            return;
        }

        var prefix = $"backups/{_backupId}/";
        switch (_random.Next(6))
        {
            case 5:
                Set(artifact, "compression", PickNode(["zstd", "gzip", "ZSTD", "zst", "gz", "lz4", "", null, 1, "zstd ", Raw("[]")]));
                break;
            case 4:
                Set(artifact, "notKept", PickNode([
                    null, 1, "socket", Raw("[]"), Raw("[null]"), Raw("[1]"), Raw("{}"), Raw("[{}]"), Raw("[{\"kind\":\"\",\"count\":1}]"),
                    Raw("[{\"kind\":\"socket\",\"count\":0}]"), Raw("[{\"kind\":\"socket\",\"count\":-1}]"), Raw("[{\"kind\":\"socket\",\"count\":1,\"examples\":null}]"),
                    Raw("[{\"kind\":\"socket\",\"count\":1,\"examples\":[null]}]"), Raw("[{\"kind\":\"socket\",\"count\":1,\"examples\":[1]}]"),
                    Raw("[{\"kind\":\"sock\\u001b[2Jet\\n\",\"count\":9223372036854775807,\"examples\":[\"/x\\u0000y\",\"\\ud800\"]}]"),
                    Raw("[{\"kind\":null,\"count\":1}]"), Raw("[{\"count\":1}]"), Raw("[{\"kind\":\"socket\"}]"), Raw("[{\"kind\":\"socket\",\"count\":\"2\"}]")]));
                break;
            case 0:
                Set(artifact, "key", PickNode([
                    prefix, prefix + "x", prefix + "../other/x", prefix + "..", prefix + "./x", prefix + ".", prefix + "x/", prefix + "/x", prefix + "a//b",
                    prefix + "x\\..\\..\\y", prefix + "x\0", prefix + "\n", "/" + prefix + "x", "/etc/passwd", "backups/other/x", "backups/" + _backupId, "backups/" + _backupId + "x/y",
                    "BACKUPS/" + _backupId + "/x", "", null, 5, "../" + prefix + "x", prefix + "x/../../..", prefix + "\u2024\u2024/x", prefix + "…/x", prefix + new string('k', 5000),
                    "s3://bucket/" + prefix + "x", prefix + "database.dump"]));
                break;
            case 1:
                Set(artifact, "size", PickNode([-1, long.MinValue, long.MaxValue, 0, "1", 1.5, null, Raw("9223372036854775808"), Raw("-9223372036854775809"), Raw("1e3"), Raw("1.0"), Raw("1e400"), Raw("-0"), true]));
                break;
            case 2:
                var valid = new string('a', 64);
                Set(artifact, "sha256", PickNode([
                    valid.ToUpperInvariant(), valid[..63], valid + "a", new string('g', 64), new string('٣', 64), " " + valid[1..], valid[..63] + "\n", "", null, 12,
                    new string('0', 64), "sha256:" + valid, Convert.ToBase64String(new byte[32]), new string('A', 64), valid[..62] + "\u00e9"]));
                break;
            default:
                Set(artifact, "name", PickNode(["database", "globals", "config", "Database", "config ", "", "extra", null, 1, "databasе"]));
                break;
        }
    }

    private void MutateArray(JsonObject root)
    {
        var name = _random.Pick(["artifacts", "configDirectories", "warnings"]);
        if (root[name] is not JsonArray array)
        {
            return;
        }

        switch (_random.Next(4))
        {
            case 0 when array.Count > 0:
                var i = _random.Next(array.Count);
                array.Insert(_random.Next(array.Count + 1), array[i]?.DeepClone());
                Log.Add($"duplicated {name}[{i}]");
                break;
            case 1 when array.Count > 0:
                var j = _random.Next(array.Count);
                array.RemoveAt(j);
                Log.Add($"removed {name}[{j}]");
                break;
            case 2:
                array.Insert(_random.Next(array.Count + 1), null);
                Log.Add($"inserted null into {name}");
                break;
            default:
                array.Clear();
                Log.Add($"emptied {name}");
                break;
        }
    }

    private void MutateConfigDirectory(JsonArray directories)
    {
        var index = _random.Next(directories.Count);
        if (directories[index] is not JsonObject directory)
        {
            return;
        }

        if (_random.Chance(0.5))
        {
            var path = PickNode([
                "relative/dir", "/", "", "/var/../etc", "/var/local/dtr/", "/var//local", "/var/./local", "C:\\dtr", "\\\\server\\share", "/var/local\0/dtr",
                "/etc", "/var/local/dtr/..", "//var/local/dtr", null, 7, "/var/local/dtr/sub", "/var/local"]);
            Set(directory, "path", path);
            if (path is JsonValue v && v.TryGetValue<string>(out var text) && text.StartsWith('/') && _random.Chance(0.5))
            {
                // Keep the pair consistent as the writer would, so the path alone is what is tested.
                Set(directory, "entryPrefix", text.TrimStart('/'));
            }
        }
        else
        {
            Set(directory, "entryPrefix", PickNode([
                "", "/var/local/dtr", "../etc", "var/../etc", "var//local", "var/./local", "var/local/", ".", "..", "var/local\0", null, 3, "var\\..\\etc", "etc"]));
        }
    }

    private void MutateFingerprint(JsonObject root)
    {
        JsonNode? value = _random.Next(6) switch
        {
            0 => null,
            1 => new JsonObject { ["rowCounts"] = null },
            2 => new JsonObject { ["rowCounts"] = new JsonObject { [""] = 1 } },
            3 => new JsonObject { ["rowCounts"] = new JsonObject { ["public.t"] = -1 } },
            4 => new JsonObject { ["rowCounts"] = new JsonObject { ["public.t"] = Raw("1e400") } },
            _ => new JsonObject { ["rowCounts"] = new JsonObject { ["public.t"] = 1, ["public.u"] = "1" } },
        };
        root["fingerprint"] = value;
        Log.Add($"fingerprint = {Describe(value)}");
    }

    private byte[] MutateBytes(byte[] bytes)
    {
        switch (_random.Next(10))
        {
            case 0:
                var cut = _random.Next(bytes.Length + 1);
                Log.Add($"truncated to {cut} of {bytes.Length} bytes");
                return bytes[..cut];
            case 1:
                var position = _random.Next(bytes.Length);
                bytes[position] ^= (byte)(1 + _random.Next(255));
                Log.Add($"flipped byte {position}");
                return bytes;
            case 2:
                var at = _random.Next(bytes.Length + 1);
                var invalid = _random.Pick<byte[]>([[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc0, 0xaf], [0x80], [0xe2, 0x82]]);
                Log.Add($"inserted invalid UTF-8 {Convert.ToHexString(invalid)} at {at}");
                return [.. bytes[..at], .. invalid, .. bytes[at..]];
            case 3:
                // Inside the backup id string, where only a string decoder sees it.
                var text = Encoding.UTF8.GetString(bytes);
                var idAt = text.IndexOf(_backupId, StringComparison.Ordinal);
                if (idAt < 0)
                {
                    return bytes;
                }

                var offset = Encoding.UTF8.GetByteCount(text[..idAt]);
                Log.Add("invalid UTF-8 inside the backup id");
                return [.. bytes[..offset], 0xff, 0xfe, .. bytes[offset..]];
            case 4:
                Log.Add("UTF-8 byte order mark");
                return [0xef, 0xbb, 0xbf, .. bytes];
            case 5:
                var depth = _random.Pick([63, 64, 65, 1000, 20_000]);
                Log.Add($"nested {depth} deep");
                var nested = _random.Chance(0.5)
                    ? new string('[', depth) + new string(']', depth)
                    : string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth);
                return _random.Chance(0.5)
                    ? Encoding.UTF8.GetBytes(nested)
                    : Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(bytes).Replace("\"host\":", "\"host\":" + nested + ",\"hostCopy\":", StringComparison.Ordinal));
            case 6:
                Log.Add("duplicate keys in front");
                var dup = Encoding.UTF8.GetString(bytes);
                var brace = dup.IndexOf('{', StringComparison.Ordinal);
                return brace < 0 ? bytes : Encoding.UTF8.GetBytes(dup[..(brace + 1)] + "\"backupId\":\"other\",\"artifacts\":[],\"formatVersion\":99," + dup[(brace + 1)..]);
            case 7:
                Log.Add("comment and trailing comma");
                var loose = Encoding.UTF8.GetString(bytes);
                var last = loose.LastIndexOf('}');
                return last < 0 ? bytes : Encoding.UTF8.GetBytes("/* c */" + loose[..last] + ",}");
            case 8:
                var literal = _random.Pick(["NaN", "Infinity", "-Infinity", "undefined", "0x10", "'x'", "1_000"]);
                Log.Add($"size literal {literal}");
                return Encoding.UTF8.GetBytes(System.Text.RegularExpressions.Regex.Replace(Encoding.UTF8.GetString(bytes), "\"size\":[0-9]+", "\"size\":" + literal));
            default:
                var whole = _random.Pick(["", " ", "null", "[]", "{}", "\"manifest\"", "1", "true", "{\"formatVersion\":1}", "\0", LongString]);
                Log.Add($"whole document '{Fuzz.Printable(whole, 40)}'");
                return Encoding.UTF8.GetBytes(whole);
        }
    }

    private JsonNode? WrongValue() => _random.Next(18) switch
    {
        0 => null,
        1 => true,
        2 => 0,
        3 => -1,
        4 => 1.5,
        5 => Raw("1e400"),
        6 => Raw("9223372036854775808"),
        7 => Raw("-9223372036854775809"),
        8 => "",
        9 => "string",
        10 => new JsonArray(),
        11 => new JsonObject(),
        12 => new JsonArray((JsonNode?)null),
        13 => new JsonArray(1, 2),
        14 => new JsonObject { ["a"] = 1 },
        15 => LongString,
        16 => long.MaxValue,
        _ => "\u0000\ud800",
    };

    private static JsonNode? Property(JsonObject? obj, string name) => obj is null ? null : obj[name];

    private JsonNode? PickNode(JsonNode?[] items) => items[_random.Next(items.Length)];

    private JsonNode Raw(string json)
    {
        _raw.Add(json);
        return RawMarker + (_raw.Count - 1).ToString(CultureInfo.InvariantCulture);
    }

    private void Set(JsonObject target, string name, JsonNode? value)
    {
        // Shared nodes (picked from a pool) cannot have two parents.
        target[name] = value?.Parent is null ? value : value.DeepClone();
        Log.Add($"{name} = {Describe(value)}");
    }

    private static JsonObject Artifact(string name, string backupId, long size) => new()
    {
        ["name"] = name,
        ["key"] = $"backups/{backupId}/{name}.bin",
        ["size"] = size,
        ["sha256"] = new string('b', 64),
    };

    private string Describe(JsonNode? value)
    {
        var text = value?.ToJsonString() ?? "null";
        foreach (var (raw, i) in _raw.Select((r, i) => (r, i)))
        {
            text = text.Replace(Quote(RawMarker + i.ToString(CultureInfo.InvariantCulture)), raw, StringComparison.Ordinal);
        }

        return Fuzz.Printable(text, 80);
    }
}
