/** Questions about the bundled corpus, for benchmarks that ask or search it. */
export const CORPUS_QUESTIONS = [
  'How does fusion-in-decoder combine the retrieved passages?',
  'What does the cross-attention say about citations?',
  'How are documents cut into passages?',
  'What is reciprocal rank fusion?',
  'Which parameters control the HNSW index?',
  'How is BM25 computed in the document store?',
  'What does nDCG at 10 measure?',
  'How do I check that the service is ready?',
  'Why is exact search kept next to HNSW?',
  'What happens when a document changes and is ingested again?',
];
