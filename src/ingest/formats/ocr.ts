import { createWorker, OEM, PSM, type Block, type Worker as TesseractWorker } from 'tesseract.js';
import { buildLines, linesToText, readingOrder, type Line, type Run } from './reading-order.js';
import { ocrLanguageDir, ocrLanguagesProblem } from './ocr-languages.js';
import { FileLimitError, UnreadableFileError, type OcrOptions } from './types.js';

/** What OCR made of one page image: its text in reading order and tesseract's mean word confidence (0–100). */
export interface OcrPage {
  text: string;
  confidence: number;
}

/**
 * A tesseract worker (tesseract.js runs the wasm engine on a worker thread of its own, so recognition never holds the
 * thread that asks for it) kept between files: starting one loads the core and the language model, ~0.5 s. It is
 * closed after `IDLE_MS` without work, and while idle it does not keep the process alive.
 */
const IDLE_MS = 30_000;

/** tesseract.js's worker object also carries the node Worker it runs on (not in its type declarations). */
type WorkerWithThread = TesseractWorker & { worker?: { ref(): void; unref(): void } | null };

class OcrLane {
  private worker: Promise<WorkerWithThread> | undefined;
  private idle: NodeJS.Timeout | undefined;
  /** Jobs run one after another, so that a job's time budget counts its own recognition only. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Jobs queued or running, for the engine to pick the least busy lane. */
  pending = 0;

  constructor(private readonly language: string) {}

  /**
   * `dpi`: the image's resolution when known (rendered PDF pages, images that record it); it scales the layout.
   * `deadline` (a `performance.now()` time) and `refusal` are looked at when the job starts, after its wait in the queue.
   */
  recognize(image: Uint8Array, dpi: number | undefined, deadline: number, refusal: () => Error | undefined): Promise<OcrPage> {
    this.pending++;
    const job = this.queue
      .then(() => {
        const refused = refusal();
        if (refused) throw refused;
        return this.run(image, dpi, deadline - performance.now());
      })
      .finally(() => this.pending--);
    this.queue = job.catch(() => undefined);
    return job;
  }

  async close(): Promise<void> {
    clearTimeout(this.idle);
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await (await worker.catch(() => undefined))?.terminate();
  }

  private async run(image: Uint8Array, dpi: number | undefined, timeoutMs: number): Promise<OcrPage> {
    clearTimeout(this.idle);
    const worker = await this.started();
    // Held while it works: a CLI awaiting a page has nothing else keeping its event loop alive.
    worker.worker?.ref();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(0, timeoutMs))));
    try {
      // A known resolution spares tesseract its estimate; 0 lets it estimate for an image that does not say.
      await worker.setParameters({ user_defined_dpi: String(dpi ?? 0) });
      // A PNG, decoded by leptonica inside the worker; blocks give the page's layout (columns, paragraphs, lines);
      // rotateAuto straightens a scan a few degrees askew.
      const png = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
      const result = await Promise.race([worker.recognize(png, { rotateAuto: true }, { blocks: true, text: false }), timeout]);
      if (result === 'timeout') {
        // The wasm engine cannot be interrupted inside a page: only stopping its thread frees the core at once.
        await this.close();
        throw new OcrTimeout();
      }
      return { text: blocksToText(result.data.blocks ?? [], 72 / (dpi ?? ASSUMED_DPI)), confidence: result.data.confidence };
    } finally {
      clearTimeout(timer);
      if (this.worker) {
        worker.worker?.unref();
        this.idle = setTimeout(() => void this.close(), IDLE_MS);
        this.idle.unref();
      }
    }
  }

  private started(): Promise<WorkerWithThread> {
    this.worker ??= this.create();
    // A worker that failed to start is not kept: the next file tries again.
    this.worker.catch(() => (this.worker = undefined));
    return this.worker;
  }

  private async create(): Promise<WorkerWithThread> {
    const langPath = ocrLanguageDir(this.language);
    if (!langPath) throw new UnreadableFileError(`OCR: ${ocrLanguagesProblem([this.language])} (ingest.ocr.languages)`);
    // Offline by construction: the core wasm is required from tesseract.js-core, the data read from langPath, and
    // with cacheMethod 'none' nothing is read from or written to a cache folder.
    const worker = (await createWorker(this.language, OEM.LSTM_ONLY, {
      langPath,
      cacheMethod: 'none',
      gzip: true,
      // Without a handler tesseract.js rethrows a failed job inside its message listener, an uncaught exception.
      errorHandler: () => undefined,
    })) as WorkerWithThread;
    // tesseract's API defaults to one uniform block; AUTO analyses the layout, so columns are read one after another.
    // debug_file: tesseract prints notes ("Estimating resolution as 334") to stdout, into the CLI's output otherwise.
    await worker.setParameters({ tessedit_pageseg_mode: PSM.AUTO, debug_file: '/dev/null' } as Parameters<
      TesseractWorker['setParameters']
    >[0]);
    return worker;
  }
}

/**
 * `workers` tesseract workers, each on a thread of its own and one page at a time: a page goes to the least busy one,
 * so the pages of one file (and of files read at once) are recognised side by side. Every page is recognised alone by
 * the LSTM engine, which keeps no state between pages, so the text does not depend on which worker read it.
 */
class OcrEngine {
  private readonly lanes: OcrLane[];

  constructor(language: string, workers: number) {
    this.lanes = Array.from({ length: workers }, () => new OcrLane(language));
  }

  recognize(image: Uint8Array, dpi: number | undefined, deadline: number, refusal: () => Error | undefined): Promise<OcrPage> {
    const lane = this.lanes.reduce((best, l) => (l.pending < best.pending ? l : best));
    return lane.recognize(image, dpi, deadline, refusal);
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.close()));
  }
}

class OcrTimeout extends Error {}

/** Scans are mostly 300 dpi; for an image that does not record its resolution this only scales layout thresholds. */
const ASSUMED_DPI = 300;

const engines = new Map<string, OcrEngine>();

function engineFor(languages: readonly string[], workers: number): OcrEngine {
  const problem = ocrLanguagesProblem(languages);
  if (problem) throw new UnreadableFileError(`OCR: ${problem} (ingest.ocr.languages)`);
  const key = `${languages.join('+')}/${workers}`;
  let engine = engines.get(key);
  if (!engine) engines.set(key, (engine = new OcrEngine(languages[0]!, workers)));
  return engine;
}

/** Stops the OCR workers this thread started (they also stop by themselves once idle). */
export async function closeOcr(): Promise<void> {
  const all = [...engines.values()];
  engines.clear();
  await Promise.all(all.map((e) => e.close()));
}

/**
 * The OCR of one file's pages, within its time budget (`maxMsPerFile`, from the first page on). `total` is how many
 * pages the file has to OCR, for the limit's message.
 */
export class FileOcr {
  private readonly engine: OcrEngine;
  private readonly deadline: number;
  private done = 0;
  /** Why the file's OCR stopped (its time budget spent): its pages still queued are refused for the same reason. */
  private failed: Error | undefined;

  constructor(
    private readonly options: OcrOptions,
    private readonly total: number,
  ) {
    this.engine = engineFor(options.languages, options.workers);
    this.deadline = performance.now() + options.maxMsPerFile;
  }

  async page(image: Uint8Array, dpi: number | undefined): Promise<OcrPage> {
    try {
      const page = await this.engine.recognize(image, dpi, this.deadline, () => this.failed);
      this.done++;
      return page;
    } catch (err) {
      if (!(err instanceof OcrTimeout)) throw err;
      this.failed ??= new FileLimitError(
        `OCR took longer than ${this.options.maxMsPerFile} ms (ingest.ocr.maxMsPerFile) and was stopped after ${this.done} of ${this.total} page(s)`,
        422,
      );
      throw this.failed;
    }
  }
}

/** Whether a line holds anything but specks: scanner noise comes out as lone punctuation. */
const hasContent = (line: Line) => /[\p{L}\p{N}]/u.test(line.text);

/**
 * tesseract's words → runs in points (y upwards), each on its line's baseline at the word's x and sized by the line's
 * row height (for printed text within a few percent of the font size), so they go through the reading order the PDF
 * text layer does.
 */
function wordsToRuns(blocks: Block[], pointsPerPixel: number): Run[] {
  const runs: Run[] = [];
  for (const line of blocks.flatMap((b) => b.paragraphs.flatMap((p) => p.lines))) {
    const { x0, y0, x1, y1 } = line.baseline;
    const slope = x1 !== x0 ? (y1 - y0) / (x1 - x0) : 0;
    const size = Math.max(1, line.rowAttributes.rowHeight, line.bbox.y1 - line.bbox.y0) * pointsPerPixel;
    for (const word of line.words) {
      const text = word.text.trim();
      if (text === '') continue;
      const baseline = y0 + slope * (word.bbox.x0 - x0);
      runs.push({ text, x0: word.bbox.x0 * pointsPerPixel, x1: word.bbox.x1 * pointsPerPixel, y: -baseline * pointsPerPixel, size });
    }
  }
  return runs;
}

/**
 * tesseract's layout → text, by the PDF text layer's reading order (reading-order.ts): tesseract's own blocks keep
 * side-by-side columns of a few lines on one line, while the gutter between them is plain in the words' positions.
 * Lines are rebuilt from the words, columns read one after another, paragraphs separated by a blank line, and a word
 * hyphenated at a line end joined again.
 */
export function blocksToText(blocks: Block[], pointsPerPixel: number): string {
  return linesToText(readingOrder(buildLines(wordsToRuns(blocks, pointsPerPixel))).filter(hasContent));
}
