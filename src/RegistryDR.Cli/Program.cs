using System.CommandLine;
using RegistryDR.Cli;
using RegistryDR.Cli.Rendering;
using RegistryDR.Processes;

// Before any work: see NativeHeap for why (memory held by glibc arenas during a backup).
NativeHeap.Tune();

// On a terminal, stderr gets a status line that log lines pass above (the progress display).
// Installed before any logger exists: the console logger keeps the writer it finds.
if (!Console.IsErrorRedirected)
{
    var statusLine = new StatusLine(Console.Error, () => Console.WindowWidth);
    StatusLine.Current = statusLine;
    Console.SetError(statusLine);
}

var parse = RegistryDrCli.Build().Parse(args);
// An invalid command line is exit 2 like an invalid configuration (System.CommandLine's own is 1);
// --help clears the errors (e.g. `registry-dr restore --bogus --help` shows the help).
if (parse.Errors.Count > 0 && parse.Action is System.CommandLine.Invocation.ParseErrorAction)
    return RegistryDrCli.ReportParseErrors(parse, args.Contains("--json"));

// SIGTERM/SIGINT handling is ours (CliContext), not System.CommandLine's: its termination
// timeout would end the process before a cancelled backup has removed its partial set.
return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
