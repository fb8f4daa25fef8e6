import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * Where tesseract's language data comes from: the npm packages `@tesseract.js-data/<code>`, resolved from this module
 * like any dependency (never a machine path, never the CDN tesseract.js would otherwise download from). Their
 * `4.0.0_best_int` folder holds the LSTM-only model in integer form: a quarter of the size of the `4.0.0` folder's
 * combined legacy+LSTM data (3 MB against 11 MB for English), so a worker starts sooner, and the LSTM engine is the one
 * tesseract.js runs by default.
 */
const require = createRequire(import.meta.url);
const MODEL_FOLDER = '4.0.0_best_int';

/** A tesseract language code: `eng`, `deu`, `chi_sim`. */
export const OCR_LANGUAGE_CODE = /^[a-z]{3}(_[a-z]+)*$/;

export function ocrLanguagePackage(code: string): string {
  return `@tesseract.js-data/${code}`;
}

/** The folder holding `<code>.traineddata.gz`, or undefined when the language's package is not installed. */
export function ocrLanguageDir(code: string): string | undefined {
  if (!OCR_LANGUAGE_CODE.test(code)) return undefined;
  let manifest: string;
  try {
    manifest = require.resolve(`${ocrLanguagePackage(code)}/package.json`);
  } catch {
    return undefined;
  }
  const dir = path.join(path.dirname(manifest), MODEL_FOLDER);
  return existsSync(path.join(dir, `${code}.traineddata.gz`)) ? dir : undefined;
}

/** What is wrong with a language list, in words that say how to fix it; undefined when it can be used. */
export function ocrLanguagesProblem(languages: readonly string[]): string | undefined {
  const missing = languages.filter((code) => ocrLanguageDir(code) === undefined);
  if (missing.length > 0) {
    const packages = missing.map((code) => `${ocrLanguagePackage(code)}@1.0.0`).join(' ');
    return `no OCR data installed for ${missing.map((c) => JSON.stringify(c)).join(', ')}: add it with \`npm install --save ${packages}\``;
  }
  // tesseract.js reads every language of a worker from its one `langPath` folder, and each package is its own folder.
  if (languages.length > 1) return 'one OCR language at a time: tesseract.js reads all languages of a worker from one folder';
  return undefined;
}
