using System.Reflection;
using Microsoft.Extensions.Logging;

namespace RegistryDR.Tests.Monitoring;

[TestClass]
public sealed class LogEventIdTests
{
    /// <summary>
    /// An event id names one kind of log line: alerts and tests select lines by it. Two streams
    /// once both chose the 8000s, so ids like 8010 meant two different lines.
    /// </summary>
    [TestMethod]
    public void EveryLogMessage_HasAnEventIdNoOtherMessageUses()
    {
        var assemblies = new[] { typeof(RegistryDR.Backup.BackupService).Assembly, Assembly.Load("registry-dr") };
        var byId = assemblies
            .SelectMany(a => a.GetTypes())
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly))
            .Select(m => (Method: m, Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(x => x.Attribute is not null && x.Attribute.EventId != 0)
            .GroupBy(x => x.Attribute!.EventId)
            .Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(x => $"{x.Method.DeclaringType!.Name}.{x.Method.Name}"))}")
            .ToList();
        Assert.IsEmpty(byId, string.Join("\n", byId));
    }
}
