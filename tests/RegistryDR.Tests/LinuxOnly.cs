// RegistryDR protects Linux registry nodes: it relies on Unix modes, owners, symlinks and
// POSIX signals throughout. Declaring it here keeps the platform analyzer honest once, rather
// than guarding every call.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
