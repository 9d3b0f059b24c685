namespace RegistryDR.Registry;

/// <summary>The check cannot start: an option or the credentials file is unusable. The message says which and what to give instead.</summary>
public sealed class RegistryCheckConfigurationException(string message) : Exception(message);

/// <summary>
/// The registry cannot be walked at all: it does not answer, is not an OCI distribution API at
/// <c>/v2/</c>, refuses the credentials, or the catalog cannot be listed. The message names the
/// URL (never the credentials) and the answer.
/// </summary>
public sealed class RegistryUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
