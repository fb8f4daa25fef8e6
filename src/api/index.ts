export { createApp } from './app.js';
export { apiOptionsFrom } from './options.js';
export type { ApiBackend, ApiOptions, ApiState } from './context.js';
export { buildOpenApiDocument } from './openapi.js';
export { HttpError } from './errors.js';
export { installLastResortGuard } from './last-resort.js';
export {
  ApiKeyAuthenticator,
  AuthConfigError,
  authPolicyFor,
  generateApiKey,
  hashApiKey,
  type AuthPolicy,
  type Principal,
} from './auth.js';
export type { ApiLimits, DocumentLimits } from './schemas.js';
export { createMcpServer, documentUri, type McpCaller, type McpDeps } from './mcp/tools.js';
export { InFlightRequests } from './in-flight.js';
