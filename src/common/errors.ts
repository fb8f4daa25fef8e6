/**
 * The domain's one error model. Every stage (ingest, models, store, service) refuses with a DomainError that says
 * what kind of refusal it is; the API turns each kind into one HTTP status (src/api/errors.ts), so a new refusal
 * needs no API edit. Dependency-free so that every layer can import it.
 */

/** What kind of refusal an error is; each is one HTTP status in the API's table. */
export const ERROR_KINDS = [
  'invalid',
  'not_found',
  'conflict',
  'read_only',
  'too_large',
  'unprocessable',
  'busy',
  'unavailable',
  'cancelled',
  'internal',
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

/**
 * A refusal (or, with kind `internal`, a fault whose message is for the server log only). `code`, `field` and
 * `retryAfterSeconds` are what the client sees with the status of `kind`; `clientMessage` is the message unless that
 * holds what only the server may know (folders, internals).
 */
export abstract class DomainError extends Error {
  abstract readonly kind: ErrorKind;
  /** Stable, machine-readable: the client's `error.code`. */
  abstract readonly code: string;
  /** The request field at fault: the client's `error.field`. */
  declare readonly field?: string;
  /** When a retry should succeed (the Retry-After header), for a refusal that passes. */
  declare readonly retryAfterSeconds?: number;
  /**
   * Kind `cancelled`: what became of the work. When the cancel reason (`cause`) is the API's own answer (a timeout, the
   * client gone), the client gets that answer with this added.
   */
  declare readonly outcome?: string;

  get clientMessage(): string {
    return this.message;
  }
}
