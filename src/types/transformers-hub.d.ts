// transformers.js 2.x ships no declarations for its hub helpers; these are the two the model layer uses.
declare module '@xenova/transformers/src/utils/hub.js' {
  export function getModelFile(
    pathOrRepoId: string,
    filename: string,
    fatal?: boolean,
    options?: Record<string, unknown>,
  ): Promise<Uint8Array>;
  export function getModelJSON(
    pathOrRepoId: string,
    filename: string,
    fatal?: boolean,
    options?: Record<string, unknown>,
  ): Promise<Record<string, unknown>>;
}
