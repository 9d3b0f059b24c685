using System.Text;

namespace RegistryDR.Postgres;

/// <summary>
/// Makes <c>pg_dumpall --globals-only</c>'s script replayable on a server that already has some
/// of its roles and tablespaces (the usual restore: the node lost its database, not its server).
/// The script is read statement by statement with psql's own lexical rules — quoted identifiers
/// (which may hold ';', line breaks and quotes), string literals, dollar quotes, comments and
/// backslash meta-commands — never line by line:
/// <list type="bullet">
/// <item><c>CREATE ROLE</c> becomes "create unless it exists" (a DO block that ignores
/// duplicate_object); the <c>ALTER ROLE</c> that follows still sets the backup's attributes.</item>
/// <item>The <c>ALTER ROLE</c> of the role RegistryDR connects as loses its PASSWORD: adopting
/// another node's hash mid-restore would lock the restore and the configured password file out.</item>
/// <item><c>CREATE TABLESPACE</c> (which cannot run in the roles' single transaction, and names
/// a directory of the old node) becomes a check that the tablespace exists, failing with what to
/// create when it does not.</item>
/// </list>
/// </summary>
/// <remarks>
/// The script is handled as bytes: each char of the strings here is one byte (ISO-8859-1), so
/// text in any encoding pg_dumpall wrote (its client encoding is the database's) passes through
/// unchanged. Every byte PostgreSQL's lexer treats specially is ASCII, and the server encodings
/// are all ASCII-safe, so no byte of a multi-byte character can be mistaken for one.
/// </remarks>
internal static class RoleScript
{
    /// <summary>The script as one char per byte.</summary>
    public static string FromBytes(byte[] script) => Encoding.Latin1.GetString(script);

    public static byte[] ToBytes(string script) => Encoding.Latin1.GetBytes(script);

    /// <summary>A name (such as the connecting role) as it appears in a script read by <see cref="FromBytes"/> when written in UTF8.</summary>
    public static string AsScriptText(string name) => Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(name));

    /// <param name="script">pg_dumpall's output, one char per byte, or plain text.</param>
    /// <param name="connectingRole">The role RegistryDR connects as, in the same form as <paramref name="script"/>.</param>
    public static string MakeIdempotent(string script, string connectingRole)
    {
        var output = new StringBuilder(script.Length + 1024);
        var position = 0;
        foreach (var statement in Statements(script))
        {
            output.Append(script, position, statement.Start - position);
            position = statement.End;
            var text = script[statement.Start..statement.End];
            var words = statement.Tokens.Where(t => t.Kind is not (TokenKind.Space or TokenKind.Comment)).ToList();
            if (IsWord(words, 0, "CREATE") && IsWord(words, 1, "ROLE"))
            {
                output.Append(Guarded(text, body => $"BEGIN {body} EXCEPTION WHEN duplicate_object THEN NULL; END"));
            }
            else if (IsWord(words, 0, "CREATE") && IsWord(words, 1, "TABLESPACE") && words.Count > 2 && Name(words[2], script) is { } tablespace)
            {
                output.Append(Guarded(text, body =>
                    $"BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_tablespace WHERE spcname = {DatabaseProperties.Literal(tablespace)}) THEN " +
                    $"RAISE EXCEPTION 'tablespace % does not exist on this server; create it first (the backup''s server had: %)', {DatabaseProperties.Literal(tablespace)}, {DatabaseProperties.Literal(body)}; " +
                    "END IF; END"));
            }
            else if (IsWord(words, 0, "ALTER") && IsWord(words, 1, "ROLE") && words.Count > 2 && Name(words[2], script) == connectingRole)
            {
                output.Append(WithoutPassword(script, statement));
            }
            else
            {
                output.Append(text);
            }
        }
        output.Append(script, position, script.Length - position);
        return output.ToString();
    }

    // "DO $tag$ <block> $tag$;" around a statement, with a tag the statement does not contain.
    private static string Guarded(string statement, Func<string, string> block)
    {
        var tag = "$registrydr$";
        for (var i = 1; statement.Contains(tag, StringComparison.Ordinal); i++) tag = $"$registrydr{i}$";
        return $"DO {tag} {block(statement)} {tag};";
    }

    private static string WithoutPassword(string script, Statement statement)
    {
        var tokens = statement.Tokens;
        var text = new StringBuilder();
        for (var i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Kind == TokenKind.Word && tokens[i].Text(script).Equals("PASSWORD", StringComparison.OrdinalIgnoreCase))
            {
                var next = i + 1;
                while (next < tokens.Count && tokens[next].Kind is TokenKind.Space or TokenKind.Comment) next++;
                if (next < tokens.Count && (tokens[next].Kind == TokenKind.String || (tokens[next].Kind == TokenKind.Word && tokens[next].Text(script).Equals("NULL", StringComparison.OrdinalIgnoreCase))))
                {
                    // Drop the space before PASSWORD too, so "... BYPASSRLS PASSWORD '...';" becomes "... BYPASSRLS;".
                    while (text.Length > 0 && text[^1] is ' ' or '\t' or '\n' or '\r') text.Length--;
                    i = next;
                    continue;
                }
            }
            text.Append(tokens[i].Text(script));
        }
        return text.ToString();
    }

    private static bool IsWord(List<Token> words, int index, string keyword) =>
        index < words.Count && words[index].Kind == TokenKind.Word && words[index].Length == keyword.Length &&
        string.Compare(words[index].Source, words[index].Start, keyword, 0, keyword.Length, StringComparison.OrdinalIgnoreCase) == 0;

    /// <summary>An identifier token's name: a quoted one unescaped, an unquoted one folded to lower case (ASCII, as PostgreSQL does).</summary>
    private static string? Name(Token token, string script) => token.Kind switch
    {
        TokenKind.QuotedIdentifier => script[(token.Start + 1)..(token.End - 1)].Replace("\"\"", "\"", StringComparison.Ordinal),
        TokenKind.Word => string.Create(token.Length, (script, token.Start), static (span, s) =>
        {
            for (var i = 0; i < span.Length; i++) span[i] = s.script[s.Start + i] is >= 'A' and <= 'Z' and var c ? (char)(c + 32) : s.script[s.Start + i];
        }),
        _ => null,
    };

    internal enum TokenKind { Space, Comment, Word, QuotedIdentifier, String, DollarString, Symbol, Semicolon, MetaCommand }

    internal readonly record struct Token(TokenKind Kind, string Source, int Start, int End)
    {
        public int Length => End - Start;
        public string Text(string script) => script[Start..End];
    }

    /// <summary>One SQL statement (up to and including its ';') or one backslash meta-command line.</summary>
    internal sealed record Statement(int Start, int End, IReadOnlyList<Token> Tokens);

    /// <summary>
    /// Splits a psql script into statements and meta-command lines, with psql's lexical rules
    /// (standard_conforming_strings on, as pg_dumpall sets it; E'' strings honour backslashes).
    /// Text after the last ';' is not a statement and is left where it is.
    /// </summary>
    internal static IEnumerable<Statement> Statements(string script)
    {
        var tokens = new List<Token>();
        var start = -1;
        var i = 0;
        while (i < script.Length)
        {
            var c = script[i];
            Token token;
            if (start < 0 && c == '\\')
            {
                // A meta-command (\connect, \restrict ...) runs to the end of its line.
                var end = script.IndexOf('\n', i);
                end = end < 0 ? script.Length : end;
                yield return new Statement(i, end, [new Token(TokenKind.MetaCommand, script, i, end)]);
                i = end;
                continue;
            }
            if (char.IsWhiteSpace(c))
            {
                var end = i;
                while (end < script.Length && char.IsWhiteSpace(script[end])) end++;
                token = new Token(TokenKind.Space, script, i, end);
            }
            else if (c == '-' && At(script, i + 1) == '-')
            {
                var end = script.IndexOf('\n', i);
                token = new Token(TokenKind.Comment, script, i, end < 0 ? script.Length : end);
            }
            else if (c == '/' && At(script, i + 1) == '*')
            {
                // Block comments nest.
                var depth = 0;
                var end = i;
                do
                {
                    if (At(script, end) == '/' && At(script, end + 1) == '*') { depth++; end += 2; }
                    else if (At(script, end) == '*' && At(script, end + 1) == '/') { depth--; end += 2; }
                    else end++;
                } while (depth > 0 && end < script.Length);
                token = new Token(TokenKind.Comment, script, i, Math.Min(end, script.Length));
            }
            else if (c == '"')
            {
                token = new Token(TokenKind.QuotedIdentifier, script, i, QuotedEnd(script, i, '"', backslashes: false));
            }
            else if (c == '\'')
            {
                var escapes = i > 0 && script[i - 1] is 'E' or 'e' && (i < 2 || !IsIdentifierChar(script[i - 2]));
                token = new Token(TokenKind.String, script, i, QuotedEnd(script, i, '\'', escapes));
            }
            else if (c == '$' && DollarTag(script, i) is { } tag && (i == 0 || !IsIdentifierChar(script[i - 1])))
            {
                var close = script.IndexOf(tag, i + tag.Length, StringComparison.Ordinal);
                token = new Token(TokenKind.DollarString, script, i, close < 0 ? script.Length : close + tag.Length);
            }
            else if (IsIdentifierStart(c))
            {
                var end = i;
                while (end < script.Length && IsIdentifierChar(script[end])) end++;
                token = new Token(TokenKind.Word, script, i, end);
            }
            else if (c == ';')
            {
                token = new Token(TokenKind.Semicolon, script, i, i + 1);
            }
            else
            {
                token = new Token(TokenKind.Symbol, script, i, i + 1);
            }

            if (start < 0 && token.Kind is not (TokenKind.Space or TokenKind.Comment)) start = i;
            if (start >= 0) tokens.Add(token);
            i = token.End;
            if (token.Kind == TokenKind.Semicolon)
            {
                yield return new Statement(start, token.End, tokens);
                tokens = [];
                start = -1;
            }
        }
    }

    private static char At(string s, int i) => i < s.Length ? s[i] : '\0';

    private static int QuotedEnd(string s, int open, char quote, bool backslashes)
    {
        var i = open + 1;
        while (i < s.Length)
        {
            if (backslashes && s[i] == '\\') { i += 2; continue; }
            if (s[i] == quote)
            {
                if (At(s, i + 1) == quote) { i += 2; continue; }
                return i + 1;
            }
            i++;
        }
        return s.Length;
    }

    // "$tag$" or "$$" starting at i, or null when the '$' starts no dollar quote.
    private static string? DollarTag(string s, int i)
    {
        var end = i + 1;
        if (end < s.Length && IsIdentifierStart(s[end]))
            while (end < s.Length && IsIdentifierChar(s[end]) && s[end] != '$') end++;
        return At(s, end) == '$' ? s[i..(end + 1)] : null;
    }

    // PostgreSQL's identifier characters; every byte from 0x80 up (here a char) is a letter to it.
    private static bool IsIdentifierStart(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' or >= '\u0080';
    private static bool IsIdentifierChar(char c) => IsIdentifierStart(c) || c is (>= '0' and <= '9') or '$';
}
