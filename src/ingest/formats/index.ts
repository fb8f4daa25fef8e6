/** The file formats: reading one file (parse-file.ts), the parser thread that does it off the event loop, and the format readers. */
export {
  FILE_FORMATS,
  MEDIA_TYPES,
  extensionOf,
  fileFormat,
  fileToDocument,
  mayNeedOcr,
  parseFile,
  type FileFormat,
  type ParseFile,
  type ParsedDocument,
} from './parse-file.js';
export {
  FileLimitError,
  UnreadableFileError,
  type FileReadOptions,
  type OcrMode,
  type OcrOptions,
  type OcrPageEvent,
  type ParsedFile,
  type ParseLimits,
} from './types.js';
export { closeOcr } from './ocr.js';
export { ocrLanguagesProblem, OCR_LANGUAGE_CODE } from './ocr-languages.js';
export { ParserThread, type FileParseOptions } from './parser-thread.js';
export { JsonTextError } from './json-text.js';
export { decodeText } from './text.js';
export { parseHtml } from './html.js';
export { parseMarkdown } from './markdown.js';
