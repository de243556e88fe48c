using Ambient.Ctl.Cli;
using Spectre.Console;

// ambientctl: wiring only; each command lives in Cli/.
// Piped into a file or CI log there is no terminal width to fit; 80 columns would fold every table cell.
if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 220;
return await CommandLine.Build().Parse(args).InvokeAsync(new() { ProcessTerminationTimeout = null });
