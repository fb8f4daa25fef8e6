export function normalized(vector: Float32Array): Float32Array {
  let norm = 0;
  for (let i = 0; i < vector.length; i++) norm += vector[i]! * vector[i]!;
  norm = Math.sqrt(norm);
  const out = new Float32Array(vector.length);
  if (norm === 0) return out;
  for (let i = 0; i < vector.length; i++) out[i] = vector[i]! / norm;
  return out;
}

export function vectorToBlob(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

/** SQLite hands back Buffers at arbitrary offsets; Float32Array views need 4-byte alignment, so copy when misaligned. */
export function blobToVector(blob: Buffer): Float32Array {
  if (blob.byteOffset % 4 === 0) return new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4);
  return new Float32Array(Uint8Array.prototype.slice.call(blob).buffer);
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Keeps the k best-scoring labels seen so far; k is small, so a sorted array beats a heap in practice. */
export class TopK {
  private readonly items: Array<{ label: number; score: number }> = [];

  constructor(private readonly k: number) {}

  offer(label: number, score: number): void {
    if (this.k <= 0) return;
    const items = this.items;
    if (items.length === this.k && score <= items[items.length - 1]!.score) return;
    let i = items.length;
    while (i > 0 && items[i - 1]!.score < score) i--;
    items.splice(i, 0, { label, score });
    if (items.length > this.k) items.pop();
  }

  result(): Array<{ label: number; score: number }> {
    return this.items.slice();
  }
}
