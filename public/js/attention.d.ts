export interface TokenWeight {
  token: string;
  weight: number;
}

export interface Segment {
  text: string;
  weight?: number;
  token?: string;
}

export declare function normalizeToken(token: string): string;
export declare function tokenWeights(topTokens: ReadonlyArray<TokenWeight>): Map<string, number>;
export declare function highlightSegments(text: string, weights: Map<string, number>): Segment[];
export declare function attentionMatrix(
  tokenAttention: ReadonlyArray<{ passages: ReadonlyArray<{ passageIndex: number; weight: number }> }>,
  passageCount: number,
): number[][];
