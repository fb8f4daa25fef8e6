export { loadConfig, indexDir, ConfigError, API_SCOPES } from './config.js';
export type { AppConfig, ConfigInput, LoadConfigOptions, ApiKeyConfig, ApiScope } from './config.js';
