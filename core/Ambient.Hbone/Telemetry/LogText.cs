namespace Ambient.Hbone.Telemetry;

/// <summary>
/// Puts untrusted text (a config value, a file's content, a peer's error message) into an error or a log line.
/// Only the first <see cref="MaxValueChars"/> characters are kept, so a file that is not what it claims to be
/// (a private key or a token linked into the config folder) is never copied into logs, status pages or API
/// errors whole; control characters become '?', so a value cannot forge extra log lines.
/// </summary>
internal static class LogText
{
    /// <summary>Enough to recognise a value; far too little to carry a key (a P-256 PKCS#8 PEM is ~240 characters).</summary>
    public const int MaxValueChars = 80;

    public static string Clip(string? value, int maxChars = MaxValueChars)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxChars, 1);
        if (value is null)
        {
            return string.Empty;
        }
        // Even the first line of a PEM private key carries key bits (a P-256 PKCS#8 body reaches the private
        // scalar after 48 characters): PEM data is named, never shown.
        if (value.Contains("-----BEGIN ", StringComparison.Ordinal))
        {
            return $"(PEM data of {value.Length} characters, not shown)";
        }
        var keep = Math.Min(value.Length, maxChars);
        var clean = true;
        for (var i = 0; i < keep; i++)
        {
            if (char.IsControl(value[i]))
            {
                clean = false;
                break;
            }
        }
        if (clean && keep == value.Length)
        {
            return value;
        }
        var suffix = keep < value.Length ? $"... ({value.Length} characters)" : string.Empty;
        return string.Create(keep + suffix.Length, (value, keep, suffix), static (span, state) =>
        {
            for (var i = 0; i < state.keep; i++)
            {
                var c = state.value[i];
                span[i] = char.IsControl(c) ? '?' : c;
            }
            state.suffix.AsSpan().CopyTo(span[state.keep..]);
        });
    }
}
