using System.Collections.Frozen;

namespace Ambient.Istiod.Ca;

/// <summary>
/// The service accounts allowed to impersonate pods of their node (Istio's <c>CA_TRUSTED_NODE_ACCOUNTS</c>: a comma
/// list of <c>namespace/name</c>, e.g. <c>istio-system/ztunnel</c>). Empty: no caller may impersonate.
/// </summary>
internal sealed class TrustedNodeAccounts
{
    /// <summary>The environment variable Istio reads, honoured here the same way.</summary>
    public const string EnvironmentVariable = "CA_TRUSTED_NODE_ACCOUNTS";

    private readonly FrozenSet<string> _accounts;

    private TrustedNodeAccounts(FrozenSet<string> accounts, string text)
    {
        _accounts = accounts;
        Text = text;
    }

    public static TrustedNodeAccounts None { get; } = new(FrozenSet<string>.Empty, "");

    /// <summary>As given (normalized: <c>ns/sa</c> entries joined by commas); empty when none.</summary>
    public string Text { get; }

    public bool IsEmpty => _accounts.Count == 0;

    public bool Contains(string @namespace, string serviceAccount) => _accounts.Contains(@namespace + "/" + serviceAccount);

    /// <summary>Parses <c>ns/sa[,ns/sa...]</c> (blanks around entries ignored); null and an error naming the bad entry otherwise.</summary>
    public static TrustedNodeAccounts? TryParse(string? text, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            return None;
        }
        var accounts = new List<string>();
        foreach (var raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var slash = raw.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0 || slash == raw.Length - 1 || raw.IndexOf('/', slash + 1) >= 0)
            {
                error = $"'{raw}' is not namespace/serviceaccount (e.g. istio-system/ztunnel)";
                return null;
            }
            accounts.Add(raw);
        }
        return new TrustedNodeAccounts(accounts.ToFrozenSet(StringComparer.Ordinal), string.Join(',', accounts));
    }
}
