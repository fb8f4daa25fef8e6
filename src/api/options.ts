import type { Logger } from 'pino';
import type { AppConfig } from '../config/index.js';
import type { AuthPolicy } from './auth.js';
import type { ApiOptions } from './context.js';

/**
 * The API's options from the service's configuration: the one place config fields become HTTP limits and policies.
 * What is decided at start-up (the default collection, the auth policy, the logger) is passed in.
 */
export function apiOptionsFrom(config: AppConfig, wiring: { defaultCollection: string; auth: AuthPolicy; logger: Logger }): ApiOptions {
  return {
    ...wiring,
    limits: {
      maxQueryChars: config.server.maxQueryChars,
      maxSearchK: config.retrieval.maxK,
      maxAskK: config.reader.maxK,
      maxNewTokens: config.reader.maxNewTokensLimit,
      maxBeams: config.reader.maxBeams,
      maxRerankTopN: Math.min(config.rerank.maxTopN, config.retrieval.maxK),
    },
    documentLimits: config.documents,
    bodyLimit: config.server.bodyLimit,
    documentsBodyLimit: config.documents.bodyLimit,
    uploadLimits: config.documents.upload,
    requestTimeoutMs: config.server.requestTimeoutMs,
    generationConcurrency: config.server.generationConcurrency,
    generationQueueLength: config.server.generationQueueLength,
    protectMetrics: config.auth.protectMetrics,
    corsOrigins: config.server.cors.origins,
    rateLimit: config.server.rateLimit,
    trustProxy: config.server.trustProxy,
    chatRetrievalTurns: config.chat.retrievalTurns,
    mcp: config.mcp,
  };
}
