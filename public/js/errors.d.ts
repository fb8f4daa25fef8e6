export declare class ApiError extends Error {
  constructor(status: number, error: { code?: string; message?: string; field?: string }, retryAfterSeconds: number | undefined);
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;
}

export declare function parseRetryAfter(header: string | null | undefined, now?: number): number | undefined;

export declare function describeError(err: unknown): string;
