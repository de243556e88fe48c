using System.Runtime.CompilerServices;

// Ambient.Core.csproj grants InternalsVisibleTo by project name (Ambient.Istiod, Ambient.Ztunnel), but those
// projects set AssemblyName to "istiod-lite" and "ztunnel", which is the name the compiler checks. Until the
// csproj lists the real assembly names, grant them here so the identity types can stay internal.
[assembly: InternalsVisibleTo("istiod-lite")]
[assembly: InternalsVisibleTo("ztunnel")]
