/** Writes safetensors files for tests (the product only reads them; scripts/train writes its own). */
import { writeFileSync } from 'node:fs';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export interface TensorToWrite {
  dims: number[];
  data: Float32Array;
  dtype?: SafetensorsDtype;
}

/** float32 -> float16 bits, rounding to nearest even (normal range and subnormals; no overflow handling needed here). */
export function floatToHalf(value: number): number {
  const f = new Float32Array([value]);
  const bits = new Uint32Array(f.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = bits & 0x7fffff;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    const m = (mantissa | 0x800000) >>> (1 - exponent);
    return sign | ((m + 0x1000) >>> 13);
  }
  if (exponent >= 0x1f) return sign | 0x7c00;
  const rounded = (exponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  return sign | (rest > 0x1000 || (rest === 0x1000 && rounded & 1) ? rounded + 1 : rounded);
}

export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name]!;
    const dtype = t.dtype ?? 'F32';
    const bytes = Buffer.alloc(t.data.length * (dtype === 'F32' ? 4 : 2));
    t.data.forEach((v, i) => {
      if (dtype === 'F32') bytes.writeFloatLE(v, i * 4);
      else if (dtype === 'F16') bytes.writeUInt16LE(floatToHalf(v), i * 2);
      else bytes.writeUInt16LE(new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16, i * 2);
    });
    header[name] = { dtype, shape: t.dims, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(file, Buffer.concat([length, Buffer.from(json), ...chunks]));
}
