/**
 * How the FiD reader's passages go through the encoder (src/reader, `EncodingStrategy`; config `reader.encoding`).
 * `float-encoder` also decides which encoder file the models stage loads beside an int8 decoder.
 */
export const READER_ENCODINGS = ['batch', 'by-length', 'per-passage', 'float-encoder'] as const;
export type ReaderEncoding = (typeof READER_ENCODINGS)[number];
