export { loadConfig, indexDir, ConfigError } from './config.js';
export type { AppConfig, ConfigInput, LoadConfigOptions } from './config.js';
