export { createApp, type ApiBackend, type ApiOptions, type ApiState } from './app.js';
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
