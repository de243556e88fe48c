using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Ambient.Core.Files;

namespace Ambient.Istiod.Ca;

/// <summary>
/// Local-mode node credentials: one random bearer token per node in <c>&lt;state&gt;/tokens/&lt;node&gt;.token</c>
/// (0600, 32 random bytes as unpadded base64url, no newline). The node's ztunnel reads its file and sends
/// <c>authorization: Bearer &lt;token&gt;</c>; this stands in for Istio's Kubernetes service-account tokens.
/// Tokens survive restarts so running node proxies keep working.
/// </summary>
internal sealed class NodeTokens
{
    public const string TokensFolder = "tokens";
    public const string TokenExtension = ".token";
    private const string BearerPrefix = "Bearer ";
    private const int TokenBytes = 32;
    private static readonly int TokenChars = Base64Url.GetEncodedLength(TokenBytes);

    private readonly string _directory;
    private readonly Lock _lock = new();
    // Replaced whole on change, so readers never lock.
    private volatile Entry[] _entries = [];

    private sealed record Entry(string Node, byte[] Token);

    /// <summary>Opens <c>&lt;state&gt;/tokens</c> and loads every existing token; a damaged file is an error naming it.</summary>
    public NodeTokens(string stateDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateDirectory);
        _directory = Path.Combine(stateDirectory, TokensFolder);
        if (!Directory.Exists(_directory))
        {
            return;
        }
        StrictModes.CheckFolder(_directory, "node tokens folder");
        var entries = new List<Entry>();
        foreach (var file in Directory.EnumerateFiles(_directory, "*" + TokenExtension))
        {
            var node = Path.GetFileNameWithoutExtension(file);
            if (ValidateNodeName(node) is null)
            {
                entries.Add(new Entry(node, ReadToken(file)));
            }
        }
        _entries = entries.ToArray();
    }

    /// <summary>Where the token of <paramref name="node"/> lives under <paramref name="stateDirectory"/>.</summary>
    public static string TokenPath(string stateDirectory, string node)
        => Path.Combine(stateDirectory, TokensFolder, node + TokenExtension);

    /// <summary>The token of <paramref name="node"/>, created (0600) if missing and reused afterwards.</summary>
    public string GetOrCreate(string node)
    {
        if (ValidateNodeName(node) is { } error)
        {
            throw new ArgumentException(error, nameof(node));
        }
        lock (_lock)
        {
            foreach (var entry in _entries)
            {
                if (entry.Node == node)
                {
                    return Encoding.ASCII.GetString(entry.Token);
                }
            }
            PrivateFile.EnsureDirectory(_directory);
            var path = Path.Combine(_directory, node + TokenExtension);
            var token = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(TokenBytes));
            // Another process (an earlier istiod, or a concurrent one) may have created it: theirs wins.
            var bytes = PrivateFile.TryCreate(path, token) ? Encoding.ASCII.GetBytes(token) : ReadToken(path);
            _entries = [.. _entries, new Entry(node, bytes)];
            return Encoding.ASCII.GetString(bytes);
        }
    }

    /// <summary>
    /// True when <paramref name="authorizationHeader"/> is exactly <c>Bearer &lt;token&gt;</c> for a known node.
    /// Every known token is compared in constant time, so timing reveals neither the token nor which node matched.
    /// </summary>
    public bool TryAuthenticate(string? authorizationHeader, out string node)
    {
        node = string.Empty;
        if (authorizationHeader is null
            || authorizationHeader.Length != BearerPrefix.Length + TokenChars
            || !authorizationHeader.StartsWith(BearerPrefix, StringComparison.Ordinal))
        {
            return false;
        }
        Span<byte> presented = stackalloc byte[TokenChars];
        var tokenText = authorizationHeader.AsSpan(BearerPrefix.Length);
        for (var i = 0; i < tokenText.Length; i++)
        {
            var c = tokenText[i];
            if (c > 0x7F)
            {
                return false;
            }
            presented[i] = (byte)c;
        }
        string? match = null;
        foreach (var entry in _entries)
        {
            if (CryptographicOperations.FixedTimeEquals(presented, entry.Token))
            {
                match ??= entry.Node;
            }
        }
        if (match is null)
        {
            return false;
        }
        node = match;
        return true;
    }

    /// <summary>Node names become file names: DNS-label characters only, so no path can escape the folder.</summary>
    public static string? ValidateNodeName(string? node)
    {
        if (string.IsNullOrEmpty(node))
        {
            return "the node name is empty";
        }
        if (node.Length > 253)
        {
            return $"the node name '{node[..32]}...' is longer than 253 characters";
        }
        if (node[0] == '.' || node[0] == '-')
        {
            return $"the node name '{node}' must start with a letter or digit";
        }
        foreach (var c in node)
        {
            if (!(c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-'))
            {
                return $"the node name '{node}' may only contain lowercase letters, digits, '.' and '-' (found '{c}')";
            }
        }
        return null;
    }

    private static byte[] ReadToken(string path)
    {
        StrictModes.CheckSecretFile(path, "node token");
        var text = File.ReadAllText(path).Trim();
        if (text.Length != TokenChars || !Base64Url.IsValid(text, out var decoded) || decoded != TokenBytes)
        {
            throw new CaStateException($"node token file '{path}' is damaged: expected {TokenChars} base64url characters. " +
                "Delete it to issue a new token (the node's ztunnel must then be restarted).");
        }
        return Encoding.ASCII.GetBytes(text);
    }
}
