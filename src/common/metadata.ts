import { isPlainObject } from './plain-object.js';

/** Stored metadata JSON → the object; anything but a JSON object (null, an array, a scalar) reads as `{}`. */
export function parseMetadata(json: string): Record<string, unknown> {
  const value = JSON.parse(json) as unknown;
  return isPlainObject(value) ? value : {};
}
