/**
 * Bytes → text for the plain-text formats. UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark
 * are decoded; anything else is refused with a message saying what the bytes look like, never decoded leniently
 * (silently replaced characters would be indexed as if they were the document's text).
 */
export type Decoded = { text: string } | { error: string };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf16le = new TextDecoder('utf-16le', { fatal: true, ignoreBOM: true });
const utf16be = new TextDecoder('utf-16be', { fatal: true, ignoreBOM: true });

const SNIFF_BYTES = 8192;

/** Where UTF-8 decoding fails: the offset of the first byte that does not start or continue a valid sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len === 0 || i + len > bytes.length) return i;
    try {
      utf8.decode(bytes.subarray(i, i + len));
    } catch {
      return i;
    }
    i += len;
  }
  return -1;
}

export function decodeText(bytes: Uint8Array): Decoded {
  try {
    if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return { text: utf8.decode(bytes.subarray(3)) };
    if (bytes[0] === 0xff && bytes[1] === 0xfe) return { text: utf16le.decode(bytes.subarray(2)) };
    if (bytes[0] === 0xfe && bytes[1] === 0xff) return { text: utf16be.decode(bytes.subarray(2)) };
  } catch {
    return { error: 'the byte-order mark promises Unicode text, but the bytes after it are not valid in that encoding' };
  }
  const head = bytes.subarray(0, SNIFF_BYTES);
  const nul = head.indexOf(0);
  if (nul !== -1) {
    // ASCII text in UTF-16 has a NUL in every other byte.
    let pairs = 0;
    for (let i = 0; i + 1 < head.length; i += 2) if ((head[i] === 0) !== (head[i + 1] === 0)) pairs++;
    if (pairs > head.length / 4) return { error: 'looks like UTF-16 without a byte-order mark; save it as UTF-8 (or UTF-16 with a BOM)' };
    return { error: 'binary file (contains NUL bytes)' };
  }
  try {
    return { text: utf8.decode(bytes) };
  } catch {
    const at = firstInvalidUtf8(bytes);
    const byte = at >= 0 ? ` (byte 0x${bytes[at]!.toString(16).padStart(2, '0')} at offset ${at})` : '';
    return {
      error: `not valid UTF-8${byte}; only UTF-8 and UTF-16 with a byte-order mark are read — convert it, e.g. iconv -f latin1 -t utf-8`,
    };
  }
}
