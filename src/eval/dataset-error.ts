/** A malformed line or record in an evaluation data file; the message names the file and the line (or JSON path). */
export class DatasetFormatError extends Error {
  constructor(
    readonly file: string,
    readonly location: number | string,
    detail: string,
  ) {
    super(`${file}:${location}: ${detail}`);
    this.name = 'DatasetFormatError';
  }
}
