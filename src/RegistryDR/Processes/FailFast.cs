using System.Runtime.ExceptionServices;

namespace RegistryDR.Processes;

/// <summary>
/// Tasks that run side by side on one cancellation source (pg_dump and the range COPYs, pg_restore
/// and the range loads): the first to fail cancels the others, and what is reported is a
/// real failure (in the order the tasks were given), not the cancellations it caused.
/// </summary>
internal static class FailFast
{
    public static async Task<T> CancelOthersOnFailure<T>(Task<T> task, CancellationTokenSource others)
    {
        try
        {
            return await task;
        }
        catch
        {
            await others.CancelAsync();
            throw;
        }
    }

    public static async Task CancelOthersOnFailure(Task task, CancellationTokenSource others)
    {
        try
        {
            await task;
        }
        catch
        {
            await others.CancelAsync();
            throw;
        }
    }

    public static async Task WhenAllAsync(params Task[] tasks)
    {
        try
        {
            await Task.WhenAll(tasks);
        }
        catch
        {
            var first = tasks.Where(t => t.IsFaulted).Select(t => t.Exception!.GetBaseException())
                .FirstOrDefault(e => e is not OperationCanceledException);
            if (first is not null) ExceptionDispatchInfo.Throw(first);
            throw;
        }
    }
}
