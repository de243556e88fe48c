using System.Globalization;
using System.Text;

namespace Ambient.Ctl.Cli;

/// <summary>
/// How wide and how colourful standard output may be. Colour only on a terminal and never with NO_COLOR
/// (https://no-color.org) or TERM=dumb; when output goes to a file or a pipe the width is COLUMNS, else 80, as
/// tools reading CI logs expect.
/// </summary>
internal sealed record OutputStyle(int Width, bool Color)
{
    public const int DefaultWidth = 80;

    public static OutputStyle Stdout { get; } = Detect(!Console.IsOutputRedirected, Environment.GetEnvironmentVariable, TerminalWidth);

    public static OutputStyle Detect(bool isTerminal, Func<string, string?> env, Func<int> terminalWidth)
    {
        var color = isTerminal && string.IsNullOrEmpty(env("NO_COLOR")) && env("TERM") != "dumb";
        var width = isTerminal ? terminalWidth() : 0;
        if (width <= 0 && int.TryParse(env("COLUMNS"), NumberStyles.None, CultureInfo.InvariantCulture, out var columns) && columns > 0) width = columns;
        return new OutputStyle(width > 0 ? width : DefaultWidth, color);
    }

    private static int TerminalWidth()
    {
        try { return Console.WindowWidth; }
        catch (Exception e) when (e is IOException or PlatformNotSupportedException) { return 0; }
    }

    public string Paint(string text, Tone tone)
    {
        if (!Color || tone == Tone.Plain) return text;
        var code = tone switch
        {
            Tone.Good => "32",
            Tone.Warn => "33",
            Tone.Bad => "31",
            _ => "90",
        };
        return $"\u001b[{code}m{text}\u001b[0m";
    }
}

internal enum Tone
{
    Plain,
    Good,
    Warn,
    Bad,
    Dim,
}

/// <summary>One table cell: its text and how to colour it.</summary>
internal readonly record struct Cell(string Text, Tone Tone = Tone.Plain)
{
    public static implicit operator Cell(string text) => new(text);
}

/// <summary>
/// A plain-text table in the style of kubectl's: columns two spaces apart, cells wrapped at spaces so a word (a
/// SPIFFE identity, a URL, a path) is never cut. When even one word per line cannot fit the width, each row is
/// printed as a block of "column: value" lines instead.
/// </summary>
internal sealed class TextTable(params string[] headers)
{
    private const string Gap = "  ";
    private readonly List<Cell[]> _rows = [];

    public int RowCount => _rows.Count;

    public TextTable AddRow(params Cell[] cells)
    {
        if (cells.Length != headers.Length) throw new ArgumentException($"a row needs {headers.Length} cells, not {cells.Length}", nameof(cells));
        _rows.Add(cells);
        return this;
    }

    public string Render(OutputStyle style)
    {
        var n = headers.Length;
        var min = new int[n];
        var max = new int[n];
        for (var c = 0; c < n; c++)
        {
            min[c] = LongestWord(headers[c]);
            max[c] = headers[c].Length;
            foreach (var row in _rows)
            {
                min[c] = Math.Max(min[c], LongestWord(row[c].Text));
                max[c] = Math.Max(max[c], row[c].Text.Length);
            }
        }
        var gaps = Gap.Length * (n - 1);
        if (min.Sum() + gaps > style.Width) return RenderBlocks(style);

        var widths = (int[])max.Clone();
        var over = max.Sum() + gaps - style.Width;
        // Narrow the column with the most slack (over its longest word) one character at a time until it fits.
        while (over > 0)
        {
            var widest = -1;
            for (var c = 0; c < n; c++)
            {
                if (widths[c] > min[c] && (widest < 0 || widths[c] - min[c] > widths[widest] - min[widest])) widest = c;
            }
            widths[widest]--;
            over--;
        }

        var sb = new StringBuilder();
        var header = new Cell[n];
        for (var c = 0; c < n; c++) header[c] = headers[c].ToUpperInvariant();
        AppendRow(sb, header, widths, style);
        foreach (var row in _rows) AppendRow(sb, row, widths, style);
        return sb.ToString();
    }

    private static void AppendRow(StringBuilder sb, Cell[] row, int[] widths, OutputStyle style)
    {
        var wrapped = new List<string>[row.Length];
        var height = 1;
        for (var c = 0; c < row.Length; c++)
        {
            wrapped[c] = Wrap(row[c].Text, widths[c]);
            height = Math.Max(height, wrapped[c].Count);
        }
        for (var line = 0; line < height; line++)
        {
            var text = new StringBuilder();
            for (var c = 0; c < row.Length; c++)
            {
                var part = line < wrapped[c].Count ? wrapped[c][line] : "";
                if (c > 0) text.Append(Gap);
                text.Append(style.Paint(part, row[c].Tone));
                if (c < row.Length - 1) text.Append(' ', widths[c] - part.Length);
            }
            sb.Append(text.ToString().TrimEnd()).Append('\n');
        }
    }

    private string RenderBlocks(OutputStyle style)
    {
        var keyWidth = 0;
        foreach (var h in headers) keyWidth = Math.Max(keyWidth, h.Length + 1);
        var valueWidth = Math.Max(20, style.Width - keyWidth - 1);
        var sb = new StringBuilder();
        for (var r = 0; r < _rows.Count; r++)
        {
            if (r > 0) sb.Append('\n');
            for (var c = 0; c < headers.Length; c++)
            {
                var lines = Wrap(_rows[r][c].Text, valueWidth, breakLongWords: true);
                for (var i = 0; i < lines.Count; i++)
                {
                    var key = i == 0 ? headers[c] + ":" : "";
                    sb.Append(key.PadRight(keyWidth)).Append(' ').Append(style.Paint(lines[i], _rows[r][c].Tone)).Append('\n');
                }
            }
        }
        return sb.ToString();
    }

    private static int LongestWord(string text)
    {
        var longest = 0;
        foreach (var word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries)) longest = Math.Max(longest, word.Length);
        return longest;
    }

    /// <summary>
    /// Greedy word wrap at spaces. A word longer than the width stays whole (its line overflows) unless
    /// <paramref name="breakLongWords"/>; a SPIFFE identity stays whole even then, as a split one is no identity.
    /// </summary>
    internal static List<string> Wrap(string text, int width, bool breakLongWords = false)
    {
        var lines = new List<string>();
        var current = new StringBuilder();
        foreach (var word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var rest = word;
            while (breakLongWords && rest.Length > width && !rest.StartsWith("spiffe://", StringComparison.Ordinal))
            {
                if (current.Length > 0)
                {
                    lines.Add(current.ToString());
                    current.Clear();
                }
                lines.Add(rest[..width]);
                rest = rest[width..];
            }
            if (current.Length > 0 && current.Length + 1 + rest.Length > width)
            {
                lines.Add(current.ToString());
                current.Clear();
            }
            if (current.Length > 0) current.Append(' ');
            current.Append(rest);
        }
        if (current.Length > 0 || lines.Count == 0) lines.Add(current.ToString());
        return lines;
    }
}
