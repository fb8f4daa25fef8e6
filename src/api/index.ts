export { createApp, type ApiBackend, type ApiOptions, type ApiState } from './app.js';
export { buildOpenApiDocument } from './openapi.js';
export { HttpError } from './errors.js';
export type { ApiLimits } from './schemas.js';
