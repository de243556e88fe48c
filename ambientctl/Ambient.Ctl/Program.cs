using Ambient.Ctl.Cli;

// ambientctl: wiring only; each command lives in Cli/.
return await CommandLine.Build().Parse(args).InvokeAsync(new() { ProcessTerminationTimeout = null });
