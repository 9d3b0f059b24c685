using System.Text.Json.Nodes;
using YamlDotNet.RepresentationModel;

namespace RegistryDR.Tests.Deployment;

/// <summary>
/// A CloudFormation template read with YamlDotNet into JSON nodes, short forms expanded to the
/// long ones CloudFormation defines (<c>!Ref X</c> → <c>{"Ref": "X"}</c>, <c>!GetAtt A.B</c> →
/// <c>{"Fn::GetAtt": ["A", "B"]}</c>, <c>!Condition C</c> → <c>{"Condition": "C"}</c>, any other
/// <c>!Name</c> → <c>{"Fn::Name": ...}</c>; "Intrinsic function reference", AWS CloudFormation User
/// Guide). Every scalar is a string, as CloudFormation passes parameter values. It can evaluate
/// the template's Conditions and Rules for a set of parameter values (the functions those
/// sections allow: Ref, Equals, Not, And, Or, Contains, Condition), so tests can ask what a
/// deployment with given parameters would create or refuse.
/// </summary>
internal sealed class CloudFormationTemplate
{
    private CloudFormationTemplate(JsonObject root) => Root = root;

    public JsonObject Root { get; }

    public JsonObject Parameters => Root["Parameters"]!.AsObject();

    public JsonObject Resources => Root["Resources"]!.AsObject();

    public JsonObject Conditions => Root["Conditions"]?.AsObject() ?? [];

    public JsonObject Rules => Root["Rules"]?.AsObject() ?? [];

    public static CloudFormationTemplate Load(string fileName)
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(DeploymentTestSupport.CloudFormationDirectory, fileName))) yaml.Load(reader);
        return new CloudFormationTemplate(Convert(yaml.Documents.Single().RootNode)!.AsObject());
    }

    public JsonObject Resource(string logicalId) =>
        Resources[logicalId]?.AsObject() ?? throw new AssertFailedException($"The template has no resource {logicalId}.");

    public JsonObject Properties(string logicalId) => Resource(logicalId)["Properties"]!.AsObject();

    /// <summary>Logical ids of every resource of <paramref name="type"/>, in template order.</summary>
    public IReadOnlyList<string> ResourcesOfType(string type) =>
        [.. Resources.Where(r => (string?)r.Value!["Type"] == type).Select(r => r.Key)];

    /// <summary>The parameters' defaults, with <paramref name="overrides"/> on top (required parameters get a placeholder).</summary>
    public Dictionary<string, string> ParameterValues(IReadOnlyDictionary<string, string>? overrides = null)
    {
        var values = Parameters.ToDictionary(p => p.Key, p => (string?)p.Value!["Default"] ?? "required-" + p.Key);
        foreach (var (key, value) in overrides ?? new Dictionary<string, string>())
        {
            if (!values.ContainsKey(key)) throw new ArgumentException($"The template has no parameter {key}.", nameof(overrides));
            values[key] = value;
        }
        return values;
    }

    /// <summary>Whether condition <paramref name="name"/> holds for these parameter values.</summary>
    public bool Condition(string name, IReadOnlyDictionary<string, string> parameters) =>
        Conditions[name] is { } definition ? Truth(definition, parameters) : throw new AssertFailedException($"The template has no condition {name}.");

    /// <summary>The resources a deployment with these parameter values would create.</summary>
    public IReadOnlySet<string> CreatedResources(IReadOnlyDictionary<string, string> parameters) =>
        Resources.Where(r => r.Value!["Condition"] is not { } c || Condition((string)c!, parameters)).Select(r => r.Key).ToHashSet();

    /// <summary>The AssertDescription of every Rules assertion these parameter values fail (empty: the set is accepted).</summary>
    public IReadOnlyList<string> RuleFailures(IReadOnlyDictionary<string, string> parameters)
    {
        var failures = new List<string>();
        foreach (var (name, rule) in Rules)
        {
            if (rule!["RuleCondition"] is { } condition && !Truth(condition, parameters)) continue;
            foreach (var assertion in rule["Assertions"]!.AsArray())
            {
                if (!Truth(assertion!["Assert"]!, parameters)) failures.Add($"{name}: {(string?)assertion["AssertDescription"]}");
            }
        }
        return failures;
    }

    /// <summary>
    /// <paramref name="node"/> as a deployment with these parameter values would see it: every
    /// <c>Fn::If</c> replaced by the branch its condition picks, and <c>Ref AWS::NoValue</c> removed
    /// (from objects and lists, as CloudFormation removes the property). Other functions are kept.
    /// </summary>
    public JsonNode? Resolve(JsonNode? node, IReadOnlyDictionary<string, string> parameters)
    {
        static bool IsNoValue(JsonNode? n) => n is JsonObject o && o.Count == 1 && o["Ref"] is JsonValue v && (string?)v == "AWS::NoValue";
        switch (node)
        {
            case JsonObject o when o.Count == 1 && o["Fn::If"] is JsonArray choice:
                return Resolve(Condition((string)choice[0]!, parameters) ? choice[1] : choice[2], parameters);
            case JsonObject o:
                var copy = new JsonObject();
                foreach (var (key, value) in o)
                {
                    var resolved = Resolve(value, parameters);
                    if (!IsNoValue(resolved)) copy[key] = resolved;
                }
                return copy;
            case JsonArray a:
                return new JsonArray([.. a.Select(item => Resolve(item, parameters)).Where(item => !IsNoValue(item))]);
            default:
                return node?.DeepClone();
        }
    }

    private bool Truth(JsonNode node, IReadOnlyDictionary<string, string> parameters)
    {
        var (function, argument) = Single(node);
        return function switch
        {
            "Fn::Equals" => Value(argument.AsArray()[0]!, parameters) == Value(argument.AsArray()[1]!, parameters),
            "Fn::Not" => !Truth(argument.AsArray()[0]!, parameters),
            "Fn::And" => argument.AsArray().All(a => Truth(a!, parameters)),
            "Fn::Or" => argument.AsArray().Any(a => Truth(a!, parameters)),
            "Fn::Contains" => argument.AsArray()[0]!.AsArray().Select(v => Value(v!, parameters)).Contains(Value(argument.AsArray()[1]!, parameters)),
            "Condition" => Condition((string)argument!, parameters),
            _ => throw new AssertFailedException($"Cannot evaluate {function} as a condition."),
        };
    }

    private static string Value(JsonNode node, IReadOnlyDictionary<string, string> parameters)
    {
        if (node is JsonValue) return (string)node!;
        var (function, argument) = Single(node);
        return function == "Ref" ? parameters[(string)argument!] : throw new AssertFailedException($"Cannot evaluate {function} as a value.");
    }

    private static (string Function, JsonNode Argument) Single(JsonNode node)
    {
        var entry = node.AsObject().Single();
        return (entry.Key, entry.Value!);
    }

    /// <summary>Every parameter named by Ref or by ${Name} in a Fn::Sub string anywhere under <paramref name="node"/>.</summary>
    public static IReadOnlySet<string> ReferencedNames(JsonNode? node)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        void Walk(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    foreach (var (key, value) in o)
                    {
                        if (key == "Ref" && value is JsonValue) names.Add((string)value!);
                        else if (key == "Fn::Sub")
                        {
                            var text = value is JsonArray a ? (string)a[0]! : (string)value!;
                            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(text, @"\$\{([A-Za-z0-9:]+)(\.[A-Za-z]+)?\}")) names.Add(m.Groups[1].Value);
                            if (value is JsonArray withMap) Walk(withMap[1]);
                        }
                        else Walk(value);
                    }
                    break;
                case JsonArray a:
                    foreach (var item in a) Walk(item);
                    break;
            }
        }
        Walk(node);
        return names;
    }

    /// <summary>Every condition named by Fn::If or {Condition: name} under <paramref name="node"/>.</summary>
    public static IReadOnlySet<string> ReferencedConditions(JsonNode? node)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        void Walk(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    foreach (var (key, value) in o)
                    {
                        if (key == "Fn::If") names.Add((string)value!.AsArray()[0]!);
                        if (key == "Condition" && value is JsonValue) names.Add((string)value!);
                        Walk(value);
                    }
                    break;
                case JsonArray a:
                    foreach (var item in a) Walk(item);
                    break;
            }
        }
        Walk(node);
        return names;
    }

    private static JsonNode? Convert(YamlNode node)
    {
        var tag = node.Tag.IsEmpty ? null : node.Tag.Value;
        JsonNode? value = node switch
        {
            YamlScalarNode scalar => JsonValue.Create(scalar.Value ?? ""),
            YamlSequenceNode sequence => new JsonArray([.. sequence.Children.Select(Convert)]),
            YamlMappingNode mapping => new JsonObject(mapping.Children.Select(c =>
                KeyValuePair.Create(((YamlScalarNode)c.Key).Value!, Convert(c.Value)))),
            _ => throw new InvalidOperationException($"Unexpected YAML node {node.GetType().Name}"),
        };
        if (tag is null || !tag.StartsWith('!') || tag.StartsWith("tag:", StringComparison.Ordinal)) return value;
        var name = tag[1..];
        return name switch
        {
            "Ref" => new JsonObject { ["Ref"] = value },
            "Condition" => new JsonObject { ["Condition"] = value },
            "GetAtt" when value is JsonValue => new JsonObject
            {
                ["Fn::GetAtt"] = new JsonArray([.. ((string)value!).Split('.', 2).Select(p => (JsonNode)JsonValue.Create(p))]),
            },
            _ => new JsonObject { ["Fn::" + name] = value },
        };
    }
}
