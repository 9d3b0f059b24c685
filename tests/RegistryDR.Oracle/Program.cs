using Npgsql;
using RegistryDR.Tests.Infrastructure;

// The tests' oracles for scripts (scripts/demo.sh, bench/run.sh): write a snapshot before and
// after a restore, then diff the two files.
//   registrydr-oracle database            the database named by PGDATABASE on PGHOST:PGPORT as PGUSER,
//                                         password from PGPASSWORD (never argv); one line per fact
//   registrydr-oracle tree DIRECTORY...   for each directory: a header line, then one line per path
if (args is ["database"])
{
    var builder = new NpgsqlConnectionStringBuilder
    {
        Host = Environment.GetEnvironmentVariable("PGHOST") ?? "127.0.0.1",
        Port = int.TryParse(Environment.GetEnvironmentVariable("PGPORT"), out var port) ? port : 5432,
        Username = Environment.GetEnvironmentVariable("PGUSER") ?? "postgres",
        Password = Environment.GetEnvironmentVariable("PGPASSWORD"),
        Database = Environment.GetEnvironmentVariable("PGDATABASE") ?? "postgres",
        Pooling = false,
        CommandTimeout = 0,
    };
    var snapshot = await DatabaseSnapshot.CaptureAsync(builder.ConnectionString);
    foreach (var line in snapshot.ToLines()) Console.Out.WriteLine(line);
    return 0;
}

if (args is ["tree", _, ..])
{
    foreach (var directory in args[1..])
    {
        Console.Out.WriteLine($"== {directory}");
        foreach (var line in DirectorySnapshot.Take(directory).Entries) Console.Out.WriteLine(line);
    }

    return 0;
}

Console.Error.WriteLine("usage: registrydr-oracle database   (connection from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)");
Console.Error.WriteLine("       registrydr-oracle tree DIRECTORY...");
return 2;
