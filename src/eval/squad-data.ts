import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { DatasetFormatError } from './dataset-error.js';

export interface SquadParagraph {
  /** `${article title}#${paragraph index within the article}` — unique within a file. */
  id: string;
  title: string;
  context: string;
}

export interface SquadQuestion {
  id: string;
  question: string;
  /** Reference answer texts in file order (duplicates kept); empty for unanswerable SQuAD v2 questions. */
  answers: string[];
  paragraphId: string;
  isImpossible: boolean;
}

export interface SquadDataset {
  version: string;
  paragraphs: SquadParagraph[];
  questions: SquadQuestion[];
}

const squadFileSchema = z.object({
  version: z.union([z.string(), z.number()]).optional(),
  data: z.array(
    z.object({
      title: z.string(),
      paragraphs: z.array(
        z.object({
          context: z.string(),
          qas: z.array(
            z.object({
              id: z.string().min(1),
              question: z.string(),
              answers: z.array(z.object({ text: z.string() })),
              is_impossible: z.boolean().optional(),
            }),
          ),
        }),
      ),
    }),
  ),
});

function formatIssuePath(issuePath: ReadonlyArray<PropertyKey>): string {
  return issuePath
    .map((key) => (typeof key === 'number' ? `[${key}]` : `.${String(key)}`))
    .join('')
    .replace(/^\./, '');
}

/** Converts parsed official SQuAD JSON (v1.1 or v2.0) into flat paragraph and question lists. */
export function parseSquad(json: unknown, file: string): SquadDataset {
  const parsed = squadFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DatasetFormatError(file, issue ? formatIssuePath(issue.path) || '(root)' : '(root)', issue?.message ?? 'invalid SQuAD JSON');
  }
  const paragraphs: SquadParagraph[] = [];
  const questions: SquadQuestion[] = [];
  const questionIds = new Set<string>();
  const paragraphIds = new Set<string>();
  parsed.data.data.forEach((article, articleIndex) => {
    article.paragraphs.forEach((paragraph, paragraphIndex) => {
      const id = `${article.title}#${paragraphIndex}`;
      if (paragraphIds.has(id)) {
        throw new DatasetFormatError(file, `data[${articleIndex}].title`, `article title "${article.title}" repeats`);
      }
      paragraphIds.add(id);
      paragraphs.push({ id, title: article.title, context: paragraph.context });
      paragraph.qas.forEach((qa, qaIndex) => {
        if (questionIds.has(qa.id)) {
          throw new DatasetFormatError(
            file,
            `data[${articleIndex}].paragraphs[${paragraphIndex}].qas[${qaIndex}].id`,
            `duplicate question id "${qa.id}"`,
          );
        }
        questionIds.add(qa.id);
        questions.push({
          id: qa.id,
          question: qa.question,
          answers: qa.answers.map((answer) => answer.text),
          paragraphId: id,
          isImpossible: qa.is_impossible ?? false,
        });
      });
    });
  });
  return { version: String(parsed.data.version ?? ''), paragraphs, questions };
}

/** Reads an official SQuAD JSON file. */
export async function loadSquad(file: string): Promise<SquadDataset> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    if (err instanceof SyntaxError) throw new DatasetFormatError(file, '(root)', `invalid JSON (${err.message})`);
    throw err;
  }
  return parseSquad(json, file);
}
