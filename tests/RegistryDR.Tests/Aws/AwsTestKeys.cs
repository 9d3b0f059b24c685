using Amazon.Runtime;
using RegistryDR.Tests.Infrastructure.AwsStandIns;

namespace RegistryDR.Tests.Aws;

/// <summary>Made-up keys the stand-ins are configured with; never real ones.</summary>
internal static class AwsTestKeys
{
    public const string Region = "eu-west-1";

    public static readonly StandInCredentials Long = new("AKIDREGISTRYDRTEST01", "registrydr/test+secret/0123456789abcdefABCDEF");

    public static readonly StandInCredentials Session = new("ASIAREGISTRYDRTEST02", "registrydr-session-secret-9876543210",
        "IQoJb3JpZ2luX2VjEregistrydr/test+session==token");

    public static AWSCredentials Sdk(StandInCredentials keys) =>
        keys.SessionToken is null
            ? new BasicAWSCredentials(keys.AccessKeyId, keys.SecretAccessKey)
            : new SessionAWSCredentials(keys.AccessKeyId, keys.SecretAccessKey, keys.SessionToken);
}
