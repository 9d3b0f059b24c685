using System.IO.Pipelines;
using RegistryDR.Stores;

namespace RegistryDR.Backup;

/// <summary>
/// Joins a producer that writes (an archive writer, a compressor) to the store's upload, which
/// reads, through a bounded pipe: the artifact is never whole in memory or on disk, and its
/// SHA-256 and size are taken on the way.
/// </summary>
internal static class PipedUpload
{
    private const int PauseWriterBytes = 1 << 20;

    public sealed record Result<T>(long Size, long BytesProduced, string Sha256, T Value);

    public static async Task<Result<T>> PutAsync<T>(
        IBackupStore store, string key, Func<Stream, CancellationToken, Task<T>> produce, Action<long>? onProgress, CancellationToken cancellationToken)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: PauseWriterBytes, resumeWriterThreshold: PauseWriterBytes / 2, useSynchronizationContext: false));
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var producer = Task.Run(async () =>
        {
            try
            {
                await using var output = pipe.Writer.AsStream(leaveOpen: true);
                var value = await produce(output, cts.Token);
                await output.FlushAsync(cts.Token);
                await pipe.Writer.CompleteAsync();
                return value;
            }
            catch (Exception ex)
            {
                await pipe.Writer.CompleteAsync(ex);
                throw;
            }
        }, CancellationToken.None);
        using var hashing = new HashingStream(pipe.Reader.AsStream(leaveOpen: true), onProgress);
        long size;
        try
        {
            size = await store.PutAsync(key, hashing, cts.Token);
        }
        catch
        {
            // Nobody reads the pipe any more: complete it, so the producer's writes (a compressor
            // flushing its last block on its way out, which takes no cancellation token) are
            // discarded instead of waiting forever for room in a full pipe; then cancel it.
            await pipe.Reader.CompleteAsync();
            await cts.CancelAsync();
            try { await producer; } catch { /* the store's error is the one to report unless the producer's caused it */ }
            if (producer.IsFaulted && producer.Exception!.InnerException is { } cause and not OperationCanceledException)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(cause);
            throw;
        }
        var result = await producer;
        await pipe.Reader.CompleteAsync();
        return new Result<T>(size, hashing.BytesRead, hashing.HashHex(), result);
    }
}
