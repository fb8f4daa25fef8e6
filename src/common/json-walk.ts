/**
 * One walk over a parsed JSON value, shared by the API's metadata checks and the parser thread's depth limit: both
 * meet values from request bodies, which can nest 100,000 deep, far past the call stack.
 */

/** A key of an object, or an index of an array. */
export type JsonKey = string | number;

/** One value met in a walk, with the key it sits under in its parent (none for the root). */
export interface JsonNode {
  readonly value: unknown;
  readonly key: JsonKey | undefined;
  /** Keys from the root to this value. Built on demand, so a walk that never asks stays linear in the value's size. */
  path(): JsonKey[];
}

/** A node plus what the walk needs to go on: its depth (the root is 1) and its parent, from which its path is rebuilt. */
class Frame implements JsonNode {
  constructor(
    readonly value: unknown,
    readonly key: JsonKey | undefined,
    readonly depth: number,
    readonly parent: Frame | undefined,
  ) {}

  path(): JsonKey[] {
    return pathOf(this);
  }
}

/** Keys from the root down to `frame`, climbed through parents in a loop (a path can be as long as the value is deep). */
function pathOf(frame: Frame): JsonKey[] {
  const keys: JsonKey[] = [];
  for (let at: Frame | undefined = frame; at?.key !== undefined; at = at.parent) keys.push(at.key);
  return keys.reverse();
}

/**
 * Walks `root` depth-first in document order (a parent, then each of its keys' values in turn) with an explicit stack,
 * calling `visit` on every value, and stops at the first array or object nested deeper than `maxDepth` levels (the
 * root counts as one, scalars add none). Returns whether it stopped there. Arrays' keys are their indices, as numbers.
 */
export function walkJson(root: unknown, maxDepth: number, visit?: (node: JsonNode) => void): boolean {
  const stack: Frame[] = [new Frame(root, undefined, 1, undefined)];
  while (stack.length > 0) {
    const node = stack.pop()!;
    visit?.(node);
    const { value, depth } = node;
    if (value === null || typeof value !== 'object') continue;
    if (depth > maxDepth) return true;
    // Pushed last to first, so they pop in document order (the order a caller reporting the first bad key relies on).
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push(new Frame(value[i], i, depth + 1, node));
    } else {
      const object = value as Record<string, unknown>;
      const keys = Object.keys(object);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        stack.push(new Frame(object[key], key, depth + 1, node));
      }
    }
  }
  return false;
}
