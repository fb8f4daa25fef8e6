/**
 * What a model's own files do not say but its model card does. Keyed by the repository name without the owner,
 * so `Xenova/bge-small-en-v1.5`, `BAAI/bge-small-en-v1.5` and a local folder `bge-small-en-v1.5` all match.
 */
export interface KnownEmbeddingModel {
  pooling: 'mean' | 'cls';
  queryPrefix: string;
  passagePrefix: string;
}

const BGE_EN_QUERY_PREFIX = 'Represent this sentence for searching relevant passages: ';

export const KNOWN_EMBEDDING_MODELS: Readonly<Record<string, KnownEmbeddingModel>> = {
  'bge-small-en-v1.5': { pooling: 'cls', queryPrefix: BGE_EN_QUERY_PREFIX, passagePrefix: '' },
  'bge-base-en-v1.5': { pooling: 'cls', queryPrefix: BGE_EN_QUERY_PREFIX, passagePrefix: '' },
  'bge-large-en-v1.5': { pooling: 'cls', queryPrefix: BGE_EN_QUERY_PREFIX, passagePrefix: '' },
  'all-MiniLM-L6-v2': { pooling: 'mean', queryPrefix: '', passagePrefix: '' },
  'all-MiniLM-L12-v2': { pooling: 'mean', queryPrefix: '', passagePrefix: '' },
  'all-mpnet-base-v2': { pooling: 'mean', queryPrefix: '', passagePrefix: '' },
  'e5-small-v2': { pooling: 'mean', queryPrefix: 'query: ', passagePrefix: 'passage: ' },
  'e5-base-v2': { pooling: 'mean', queryPrefix: 'query: ', passagePrefix: 'passage: ' },
};

export function knownEmbeddingModel(name: string): KnownEmbeddingModel | undefined {
  const base = name.replace(/\/+$/, '').split('/').pop() ?? name;
  return KNOWN_EMBEDDING_MODELS[base];
}
