using Microsoft.Extensions.Logging;

namespace RegistryDR.Cli.Rendering;

/// <summary>
/// The command line's loggers without <c>--verbose</c>: an event logged with an exception prints
/// its message only, not the exception's type and stack trace (which the console formatter would
/// append to the line). The operator reads what failed and what to do; <c>-v</c> shows the rest.
/// </summary>
/// <remarks>
/// Every message of ours already carries the reason (<c>{Reason}</c> is the exception's message);
/// for one that does not, the exception's message is appended, so nothing the operator needs is
/// lost. The long-running worker keeps the detail: its unexpected errors are for the journal.
/// </remarks>
internal sealed class ExceptionDetailFilter(ILoggerFactory inner) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new Logger(inner.CreateLogger(categoryName));

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    public void Dispose() => inner.Dispose();

    private sealed class Logger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (exception is null)
            {
                inner.Log(logLevel, eventId, state, null, formatter);
                return;
            }
            inner.Log(logLevel, eventId, state, null, (s, _) =>
            {
                var message = formatter(s, exception);
                return message.Contains(exception.Message, StringComparison.Ordinal) ? message : $"{message} ({exception.Message})";
            });
        }
    }
}
