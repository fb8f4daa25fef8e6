export { RagService, type AskParams, type AskOutcome, type AskHooks, type SearchParams, type ServiceLog } from './rag-service.js';
