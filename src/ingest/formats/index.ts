/** The file formats: reading one file (parse-file.ts), the parser thread that does it off the event loop, and the format readers. */
export {
  FILE_FORMATS,
  MEDIA_TYPES,
  extensionOf,
  fileFormat,
  fileToDocument,
  parseFile,
  type FileFormat,
  type ParsedDocument,
} from './parse-file.js';
export { FileLimitError, UnreadableFileError, type ParsedFile, type ParseLimits } from './types.js';
export { ParserThread, type FileParseOptions } from './parser-thread.js';
export { JsonTextError } from './json-text.js';
export { decodeText } from './text.js';
export { parseHtml } from './html.js';
export { parseMarkdown } from './markdown.js';
