using RegistryDR.Stores;

namespace RegistryDR.Tests.Infrastructure;

/// <summary>
/// A test store that passes every call to <paramref name="inner"/>; a test overrides only what it
/// changes (a delay, a gate, a fault). Every member forwards, including those added to
/// <see cref="IBackupStore"/> later: a test decorator that silently answered "no temporaries" or
/// "cannot create conditionally" once hid the code under test.
/// </summary>
internal abstract class ForwardingStore(IBackupStore inner) : IBackupStore
{
    protected IBackupStore Inner => inner;
    public virtual string Description => inner.Description;
    public virtual Task<long> PutAsync(string key, Stream content, CancellationToken cancellationToken) => inner.PutAsync(key, content, cancellationToken);
    public virtual Task<Stream> OpenReadAsync(string key, CancellationToken cancellationToken) => inner.OpenReadAsync(key, cancellationToken);
    public virtual IAsyncEnumerable<StoreItem> ListAsync(string prefix, CancellationToken cancellationToken) => inner.ListAsync(prefix, cancellationToken);
    public virtual Task DeleteAsync(string key, CancellationToken cancellationToken) => inner.DeleteAsync(key, cancellationToken);
    public virtual Task CheckAccessAsync(CancellationToken cancellationToken) => inner.CheckAccessAsync(cancellationToken);
    public virtual Task<bool> TryCreateAsync(string key, ReadOnlyMemory<byte> content, CancellationToken cancellationToken) => inner.TryCreateAsync(key, content, cancellationToken);
    public virtual bool CreateIsAtomic => inner.CreateIsAtomic;
    public virtual IAsyncEnumerable<StoreTemporary> ListTemporariesAsync(string prefix, CancellationToken cancellationToken) => inner.ListTemporariesAsync(prefix, cancellationToken);
    public virtual Task DeleteTemporaryAsync(StoreTemporary temporary, CancellationToken cancellationToken) => inner.DeleteTemporaryAsync(temporary, cancellationToken);
}
