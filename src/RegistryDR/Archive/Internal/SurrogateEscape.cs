using System.Text;

namespace RegistryDR.Archive.Internal;

/// <summary>
/// Linux file names, link targets and xattr names are bytes, not text. They are carried in .NET
/// strings with Python's "surrogateescape" scheme (PEP 383): valid UTF-8 decodes as usual, and
/// each byte that is not part of valid UTF-8 becomes the lone surrogate U+DC00 + byte
/// (U+DC80..U+DCFF), which valid UTF-8 can never produce. Encoding reverses it exactly, so
/// every byte sequence survives a round trip, while ordinary names stay ordinary strings for
/// comparisons, messages and the exclude globs.
/// </summary>
/// <remarks>
/// .NET's own file APIs decode names with U+FFFD replacement and re-encode them as UTF-8, so a
/// name such as Latin-1 "caf\xe9.conf" is listed but can never be opened, stat'ed or deleted
/// through them; every archive path goes through <see cref="UnixFileSystem"/> with these bytes.
/// </remarks>
internal static class SurrogateEscape
{
    private const char EscapeBase = '\uDC00';

    /// <summary>Decodes raw bytes, escaping every byte that is not part of valid UTF-8.</summary>
    public static string Decode(ReadOnlySpan<byte> bytes)
    {
        if (Ascii.IsValid(bytes))
        {
            return Encoding.ASCII.GetString(bytes);
        }

        var builder = new StringBuilder(bytes.Length);
        Span<char> pair = stackalloc char[2];
        while (!bytes.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(bytes, out var rune, out var consumed) == System.Buffers.OperationStatus.Done)
            {
                builder.Append(pair[..rune.EncodeToUtf16(pair)]);
                bytes = bytes[consumed..];
            }
            else
            {
                builder.Append((char)(EscapeBase + bytes[0]));
                bytes = bytes[1..];
            }
        }

        return builder.ToString();
    }

    /// <summary>The bytes a decoded string stands for. Other unpaired surrogates (which <see cref="Decode"/> never produces) become U+FFFD, as UTF-8 would make them.</summary>
    public static byte[] Encode(string text)
    {
        var output = new byte[GetByteCount(text)];
        Write(text, output);
        return output;
    }

    /// <summary><see cref="Encode"/> plus a terminating NUL, for a C call.</summary>
    public static byte[] EncodeNullTerminated(string text)
    {
        var output = new byte[GetByteCount(text) + 1];
        Write(text, output);
        return output;
    }

    /// <summary>The length of <see cref="Encode"/>'s result, in bytes.</summary>
    public static int GetByteCount(string text)
    {
        var count = 0;
        var rest = text.AsSpan();
        while (!rest.IsEmpty)
        {
            if (Rune.DecodeFromUtf16(rest, out var rune, out var consumed) == System.Buffers.OperationStatus.Done)
            {
                count += rune.Utf8SequenceLength;
            }
            else
            {
                count += IsEscape(rest[0]) ? 1 : 3;
                consumed = 1;
            }

            rest = rest[consumed..];
        }

        return count;
    }

    /// <summary>True when the string stands for bytes that are not valid UTF-8 (it holds an escape).</summary>
    public static bool HasEscapes(string text)
    {
        var rest = text.AsSpan();
        while (!rest.IsEmpty)
        {
            if (Rune.DecodeFromUtf16(rest, out _, out var consumed) != System.Buffers.OperationStatus.Done)
            {
                if (IsEscape(rest[0]))
                {
                    return true;
                }

                consumed = 1;
            }

            rest = rest[consumed..];
        }

        return false;
    }

    /// <summary>True for a char in the escape range (U+DC80..U+DCFF); it is an escaped byte when unpaired (not after a high surrogate).</summary>
    public static bool IsEscape(char c) => c is >= '\uDC80' and <= '\uDCFF';

    private static void Write(string text, Span<byte> output)
    {
        var rest = text.AsSpan();
        var position = 0;
        while (!rest.IsEmpty)
        {
            if (Rune.DecodeFromUtf16(rest, out var rune, out var consumed) == System.Buffers.OperationStatus.Done)
            {
                position += rune.EncodeToUtf8(output[position..]);
            }
            else
            {
                if (IsEscape(rest[0]))
                {
                    output[position++] = (byte)(rest[0] - EscapeBase);
                }
                else
                {
                    position += Rune.ReplacementChar.EncodeToUtf8(output[position..]);
                }

                consumed = 1;
            }

            rest = rest[consumed..];
        }
    }
}
