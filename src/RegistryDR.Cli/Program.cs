using System.CommandLine;
using RegistryDR.Cli;
using RegistryDR.Processes;

// Before any work: see NativeHeap for why (memory held by glibc arenas during a backup).
NativeHeap.Tune();

// SIGTERM/SIGINT handling is ours (CliContext), not System.CommandLine's: its termination
// timeout would end the process before a cancelled backup has removed its partial set.
return await RegistryDrCli.Build().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
