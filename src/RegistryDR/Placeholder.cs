namespace RegistryDR; internal static class Placeholder {}
