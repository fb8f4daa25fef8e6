import path from 'node:path';
import cliProgress from 'cli-progress';

/**
 * Progress of one ingest run: documents finished, passages embedded (updated during a large document too), and the
 * page OCR is at in a file (seconds per page, so a long scan shows it is moving).
 */
export interface IngestProgress {
  start(totalDocuments: number): void;
  update(documents: number, passages: number): void;
  /** OCR finished page `done` of the `total` pages of `file` that need it. */
  ocrPage(file: string, done: number, total: number): void;
  stop(): void;
}

/** "OCR scan.pdf 3/20" */
const ocrLabel = (file: string, done: number, total: number) => `OCR ${path.basename(file)} ${done}/${total}`;

/**
 * true: always report; false: never; 'auto': a redrawn bar on an interactive stderr, otherwise (a pipe, a log file,
 * CI) one plain line every few seconds, so a long run never looks hung.
 */
export type ProgressMode = boolean | 'auto';

class SilentProgress implements IngestProgress {
  start(): void {}
  update(): void {}
  ocrPage(): void {}
  stop(): void {}
}

const rate = (count: number, since: number) => {
  const seconds = (performance.now() - since) / 1000;
  return seconds > 0 ? (count / seconds).toFixed(1) : '0.0';
};

class BarProgress implements IngestProgress {
  private readonly bar: cliProgress.SingleBar;
  private startedAt = 0;
  private total = 0;
  private passages = 0;
  /** The bar's OCR field (` | OCR scan.pdf 3/20`), kept because every update replaces the bar's whole payload. */
  private ocr = '';

  constructor(stream: NodeJS.WriteStream) {
    this.bar = new cliProgress.SingleBar(
      {
        stream,
        format: 'ingest |{bar}| {value}/{total} docs | {passages} passages ({rate}/s) | ETA {eta_formatted}{ocr}',
        etaBuffer: 200,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  start(totalDocuments: number): void {
    this.startedAt = performance.now();
    this.total = Math.max(totalDocuments, 1);
    this.bar.start(this.total, 0, { passages: 0, rate: '0.0', ocr: '' });
  }

  ocrPage(file: string, done: number, total: number): void {
    this.ocr = done < total ? ` | ${ocrLabel(file, done, total)}` : '';
    this.bar.update(this.payload());
  }

  update(documents: number, passages: number): void {
    // The total is a pre-count estimate; never let the bar overflow it.
    if (documents > this.total) {
      this.total = documents;
      this.bar.setTotal(this.total);
    }
    this.passages = passages;
    this.bar.update(documents, this.payload());
  }

  private payload(): { passages: number; rate: string; ocr: string } {
    return { passages: this.passages, rate: rate(this.passages, this.startedAt), ocr: this.ocr };
  }

  stop(): void {
    this.bar.stop();
  }
}

/** For a non-interactive stderr: a line every `intervalMs`, and a last one at the end if any was written. */
export class LineProgress implements IngestProgress {
  private startedAt = 0;
  private total = 0;
  private documents = 0;
  private passages = 0;
  private timer: NodeJS.Timeout | undefined;
  private wrote = false;
  /** The file OCR is in, while it is. */
  private ocr = '';

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly intervalMs = 5000,
  ) {}

  start(totalDocuments: number): void {
    this.startedAt = performance.now();
    this.total = totalDocuments;
    this.timer = setInterval(() => this.write(), this.intervalMs);
    this.timer.unref();
  }

  update(documents: number, passages: number): void {
    this.documents = documents;
    this.passages = passages;
  }

  ocrPage(file: string, done: number, total: number): void {
    this.ocr = done < total ? `, ${ocrLabel(file, done, total)} pages` : '';
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.wrote) this.write();
  }

  private write(): void {
    this.wrote = true;
    const seconds = Math.round((performance.now() - this.startedAt) / 1000);
    const of = this.total > 0 ? `/${Math.max(this.total, this.documents)}` : '';
    this.stream.write(
      `ingest: ${this.documents}${of} documents, ${this.passages} passages embedded (${rate(this.passages, this.startedAt)}/s)${this.ocr}, ${seconds} s\n`,
    );
  }
}

export function createProgress(mode: ProgressMode | undefined, stream: NodeJS.WriteStream = process.stderr): IngestProgress {
  if (mode === false) return new SilentProgress();
  return stream.isTTY === true ? new BarProgress(stream) : new LineProgress(stream);
}
