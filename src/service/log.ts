/** Structural subset of a pino logger, so the server's logger is passed straight in. */
export interface ServiceLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
