namespace RegistryDR.Stores;

/// <summary>
/// An object was replaced or deleted while it was being read, so the rest of it cannot be
/// fetched without splicing two different objects together. An <see cref="IOException"/>
/// because it surfaces from a stream's read; reading the object again from the start is safe.
/// </summary>
public sealed class StoreObjectChangedException(string key, string store, long offset, string reason, Exception? inner = null)
    : IOException($"'{key}' in {store} {reason} while it was being read: {offset} bytes had been read from the old object, so the read was stopped rather than continued from the new one. Read it again from the start.", inner)
{
    public string Key { get; } = key;
}
