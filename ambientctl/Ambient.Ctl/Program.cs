using Ambient.Ctl.Cli;
using Spectre.Console;

// ambientctl: wiring only; each command lives in Cli/.
// Tables are ours (Cli/Output.cs); Spectre only draws the demo's spinner on a colour terminal.
if (!OutputStyle.Stdout.Color) AnsiConsole.Profile.Capabilities.Ansi = false;
return await CommandLine.Build().Parse(args).InvokeAsync(new() { ProcessTerminationTimeout = null });
