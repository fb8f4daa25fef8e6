export interface Span {
  start: number;
  end: number;
}

export declare const QUOTE_CONTEXT: number;
export declare function quoteAround(text: string, span: Span, context?: number): { before: string; answer: string; after: string };
export declare function splitAtSpan<S extends { text: string }>(segments: S[], span: Span): { before: S[]; inside: S[]; after: S[] };
