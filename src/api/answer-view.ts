import type { AskOutcome } from '../service/index.js';

/** An answer as clients see it (REST's /v1/ask, the MCP `ask` tool): internal timings and counters stay inside. */
export function publicAnswer(outcome: AskOutcome) {
  const { onnxMs: _onnxMs, embedMs: _embedMs, searchMs: _searchMs, ...timings } = outcome.timings;
  const { tokens: _tokens, promptTokens: _promptTokens, finishReason: _finishReason, ...rest } = outcome;
  return { ...rest, timings };
}
