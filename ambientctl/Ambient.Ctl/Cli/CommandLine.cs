using System.CommandLine;

namespace Ambient.Ctl.Cli;

/// <summary>The command tree. Handlers stay in the per-command classes.</summary>
internal static class CommandLine
{
    public static RootCommand Build()
    {
        var root = new RootCommand("ambientctl: run and inspect an Ambient mesh (Istio ambient mode, in C#)");
        root.Subcommands.Add(LocalCommands.Build());
        root.Subcommands.Add(ExecCommand.Build());
        root.Subcommands.Add(LabelCommand.Build());
        root.Subcommands.Add(GetCommand.Build());
        root.Subcommands.Add(WaypointCommand.Build());
        root.Subcommands.Add(LogsCommand.Build());
        root.Subcommands.Add(DemoCommand.Build());
        root.Subcommands.Add(InstallCommand.Build());
        root.Subcommands.Add(CheckCommand.Build());
        root.Subcommands.Add(NodeAgentCommand.Build());
        return root;
    }
}
