import cliProgress from 'cli-progress';

export interface IngestProgress {
  start(totalDocuments: number): void;
  update(documents: number, passages: number): void;
  stop(): void;
}

/** true: always draw (also to a pipe, as periodic lines); false: never; 'auto': only on an interactive stderr. */
export type ProgressMode = boolean | 'auto';

class SilentProgress implements IngestProgress {
  start(): void {}
  update(): void {}
  stop(): void {}
}

class BarProgress implements IngestProgress {
  private readonly bar: cliProgress.SingleBar;
  private startedAt = 0;
  private total = 0;

  constructor(stream: NodeJS.WriteStream) {
    this.bar = new cliProgress.SingleBar(
      {
        stream,
        format: 'ingest |{bar}| {value}/{total} docs | {passages} passages | {rate} docs/s | ETA {eta_formatted}',
        noTTYOutput: true,
        notTTYSchedule: 5000,
        etaBuffer: 200,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  start(totalDocuments: number): void {
    this.startedAt = performance.now();
    this.total = Math.max(totalDocuments, 1);
    this.bar.start(this.total, 0, { passages: 0, rate: '0.0' });
  }

  update(documents: number, passages: number): void {
    const seconds = (performance.now() - this.startedAt) / 1000;
    // The total is a pre-count estimate; never let the bar overflow it.
    if (documents > this.total) {
      this.total = documents;
      this.bar.setTotal(this.total);
    }
    this.bar.update(documents, { passages, rate: seconds > 0 ? (documents / seconds).toFixed(1) : '0.0' });
  }

  stop(): void {
    this.bar.stop();
  }
}

export function createProgress(mode: ProgressMode | undefined, stream: NodeJS.WriteStream = process.stderr): IngestProgress {
  const enabled = mode === true || ((mode === 'auto' || mode === undefined) && stream.isTTY === true);
  return enabled ? new BarProgress(stream) : new SilentProgress();
}
