/**
 * A synthetic fact-lookup set for training and testing readers: passages state attributes of invented people, each
 * question is answerable from exactly one passage, and the other passages describe other people with the same kinds
 * of attributes (some share a surname, a town or an employer). Names are built from syllables and split by a hash
 * into a train and a test pool, so the people, towns and companies of the test split never occur in training: a
 * reader has to find the right passage and copy from it, it cannot have memorised the answer.
 */
import { hashString, mulberry32 } from '../fixtures/prng.js';

export type FactSplit = 'train' | 'test';

export interface FactLookupOptions {
  split: FactSplit;
  /** People in the set; each gets one passage. */
  people: number;
  /** Questions asked per person (each about a different stated attribute). */
  questionsPerPerson: number;
  seed: number;
}

export interface FactPassage {
  id: string;
  /** The person's full name. */
  title: string;
  text: string;
}

export interface FactQuestion {
  id: string;
  question: string;
  answer: string;
  /** The only passage that states the answer. */
  passageId: string;
  attribute: string;
}

export interface FactLookupSet {
  passages: FactPassage[];
  questions: FactQuestion[];
}

const ONSETS = [
  'b',
  'd',
  'f',
  'g',
  'k',
  'l',
  'm',
  'n',
  'p',
  'r',
  's',
  't',
  'v',
  'z',
  'br',
  'dr',
  'gr',
  'kr',
  'tr',
  'st',
  'sh',
  'th',
  'j',
  'h',
  'w',
  'pl',
  'sk',
  'fl',
];
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'ou', 'y', 'ei'];
const CODAS = ['', '', '', 'n', 'r', 'l', 's', 'th', 'm', 'x', 'nd', 'rk', 'lt'];
const PLACE_ENDINGS = ['ford', 'holm', 'ville', 'burg', 'stead', 'mouth', 'wick', 'dale', 'port', 'bridge'];
const COMPANY_KINDS = ['Labs', 'Works', 'Industries', 'Foods', 'Logistics', 'Textiles', 'Mining', 'Press', 'Motors', 'Pharma'];
const OCCUPATIONS = [
  'carpenter',
  'pilot',
  'librarian',
  'chemist',
  'surgeon',
  'baker',
  'architect',
  'violinist',
  'geologist',
  'teacher',
  'journalist',
  'firefighter',
  'tailor',
  'astronomer',
  'gardener',
  'lawyer',
  'sculptor',
  'nurse',
  'engineer',
  'potter',
  'translator',
  'economist',
  'blacksmith',
  'photographer',
  'veterinarian',
  'cartographer',
  'plumber',
  'dentist',
];
const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'teal', 'crimson', 'indigo', 'amber', 'silver', 'maroon'];
const INSTRUMENTS = ['cello', 'flute', 'harp', 'drums', 'trumpet', 'piano', 'oboe', 'banjo', 'accordion', 'clarinet'];

type Rng = () => number;
const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
const capitalise = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** A name part belongs to one split only: 1 in 5 parts (by hash) is reserved for the test split. */
function inSplit(part: string, split: FactSplit): boolean {
  return (hashString(part.toLowerCase()) % 5 === 0) === (split === 'test');
}

function syllableWord(rng: Rng, syllables: number): string {
  let word = '';
  for (let i = 0; i < syllables; i++) word += pick(rng, ONSETS) + pick(rng, VOWELS) + (i === syllables - 1 ? pick(rng, CODAS) : '');
  return capitalise(word);
}

/** A fresh word of the split that has not been used yet in this set. */
function freshWord(rng: Rng, split: FactSplit, used: Set<string>, make: () => string): string {
  for (;;) {
    const word = make();
    if (!used.has(word) && inSplit(word, split)) {
      used.add(word);
      return word;
    }
  }
}

interface Person {
  first: string;
  last: string;
  pronoun: 'He' | 'She';
  values: Record<string, string>;
}

const fullName = (p: Person) => `${p.first} ${p.last}`;

/** One attribute: how a value is made, how passages state it and how questions ask for it. */
interface Attribute {
  name: string;
  value(ctx: GenContext): string;
  /** `{S}` is the subject (the name or a pronoun), `{V}` the value. */
  statements: string[];
  /** `{E}` is the full name. */
  questions: string[];
}

interface GenContext {
  rng: Rng;
  split: FactSplit;
  used: Set<string>;
  places: string[];
  companies: string[];
  people: Person[];
}

const ATTRIBUTES: Attribute[] = [
  {
    name: 'birthplace',
    value: (c) => pick(c.rng, c.places),
    statements: ['{S} was born in {V}.', '{S} was born in the town of {V}.', 'The birthplace of {S} is {V}.'],
    questions: ['Where was {E} born?', 'What is the birthplace of {E}?', 'In which town was {E} born?'],
  },
  {
    name: 'residence',
    value: (c) => pick(c.rng, c.places),
    statements: ['{S} lives in {V}.', '{S} now resides in {V}.', 'These days {S} makes a home in {V}.'],
    questions: ['Where does {E} live?', 'In which town does {E} reside?', 'Where is the home of {E}?'],
  },
  {
    name: 'birth year',
    value: (c) => String(1850 + Math.floor(c.rng() * 160)),
    statements: ['{S} was born in the year {V}.', 'The birth year of {S} is {V}.', '{S} came into the world in {V}.'],
    questions: ['In what year was {E} born?', 'When was {E} born?', 'What is the birth year of {E}?'],
  },
  {
    name: 'occupation',
    value: (c) => pick(c.rng, OCCUPATIONS),
    statements: ['{S} works as a {V}.', 'By trade {S} is a {V}.', '{S} earns a living as a {V}.'],
    questions: ['What does {E} do for a living?', 'What is the occupation of {E}?', 'What is the profession of {E}?'],
  },
  {
    name: 'employer',
    value: (c) => pick(c.rng, c.companies),
    statements: ['{S} is employed by {V}.', 'The employer of {S} is {V}.', '{S} has a job at {V}.'],
    questions: ['Who employs {E}?', 'Which company does {E} work for?', 'Who is the employer of {E}?'],
  },
  {
    name: 'colour',
    value: (c) => pick(c.rng, COLOURS),
    statements: ['The favourite colour of {S} is {V}.', '{S} likes the colour {V} best.', 'Of all colours {S} prefers {V}.'],
    questions: ['What is the favourite colour of {E}?', 'Which colour does {E} like best?', 'What colour does {E} prefer?'],
  },
  {
    name: 'instrument',
    value: (c) => pick(c.rng, INSTRUMENTS),
    statements: ['{S} plays the {V}.', 'In the evenings {S} practises the {V}.', 'The instrument {S} plays is the {V}.'],
    questions: ['Which instrument does {E} play?', 'What instrument does {E} practise?', 'What does {E} play in the evenings?'],
  },
  {
    name: 'spouse',
    value: (c) => {
      const p = pick(c.rng, c.people);
      return p.first;
    },
    statements: ['{S} is married to {V}.', 'The spouse of {S} is called {V}.', '{S} married a person named {V}.'],
    questions: ['Who is {E} married to?', 'What is the name of the spouse of {E}?', 'Whom did {E} marry?'],
  },
];

const ATTRIBUTES_PER_PASSAGE = 3;

/** Generates a fact-lookup set; the same options always give the same set. */
export function generateFactLookup(opts: FactLookupOptions): FactLookupSet {
  if (opts.questionsPerPerson > ATTRIBUTES_PER_PASSAGE)
    throw new RangeError(`questionsPerPerson must be at most ${ATTRIBUTES_PER_PASSAGE}`);
  const rng = mulberry32(opts.seed ^ (opts.split === 'test' ? 0x5eed : 0));
  const used = new Set<string>();
  const word = (syllables: () => number) => freshWord(rng, opts.split, used, () => syllableWord(rng, syllables()));
  const ctx: GenContext = {
    rng,
    split: opts.split,
    used,
    places: Array.from({ length: Math.max(8, Math.ceil(opts.people / 3)) }, () =>
      freshWord(rng, opts.split, used, () => syllableWord(rng, 1 + Math.floor(rng() * 2)) + pick(rng, PLACE_ENDINGS)),
    ),
    companies: Array.from({ length: Math.max(6, Math.ceil(opts.people / 4)) }, () => `${word(() => 2)} ${pick(rng, COMPANY_KINDS)}`),
    people: [],
  };
  const people: Person[] = [];
  const names = new Set<string>();
  while (people.length < opts.people) {
    // A third of the people share a surname with someone else, so a surname alone does not find the passage.
    const last = people.length > 0 && rng() < 0.33 ? pick(rng, people).last : word(() => 2 + Math.floor(rng() * 2));
    const first = word(() => 1 + Math.floor(rng() * 2));
    const person: Person = { first, last, pronoun: rng() < 0.5 ? 'He' : 'She', values: {} };
    if (names.has(fullName(person))) continue;
    names.add(fullName(person));
    people.push(person);
  }
  ctx.people = people;

  const passages: FactPassage[] = [];
  const questions: FactQuestion[] = [];
  people.forEach((person, i) => {
    const attributes = shuffled(rng, ATTRIBUTES).slice(0, ATTRIBUTES_PER_PASSAGE);
    const sentences = attributes.map((attribute, j) => {
      const value = attribute.value(ctx);
      person.values[attribute.name] = value;
      // The first sentence names the person; later ones use the name, the surname or (as a sentence's subject) a pronoun.
      const statement = pick(rng, attribute.statements);
      const titled = `${person.pronoun === 'He' ? 'Mr' : 'Ms'} ${person.last}`;
      const subjects = statement.startsWith('{S}') ? [fullName(person), titled, person.pronoun] : [fullName(person), titled];
      const subject = j === 0 ? fullName(person) : pick(rng, subjects);
      const article = /^[aeiou]/i.test(value) ? 'an' : 'a';
      return capitalise(statement.replace('{S}', subject).replace('a {V}', `${article} {V}`).replace('{V}', value));
    });
    const passageId = `${opts.split}-person-${i}`;
    passages.push({ id: passageId, title: fullName(person), text: sentences.join(' ') });
    for (const attribute of shuffled(rng, attributes).slice(0, opts.questionsPerPerson)) {
      questions.push({
        id: `${passageId}-${attribute.name.replace(' ', '-')}`,
        question: pick(rng, attribute.questions).replace('{E}', fullName(person)),
        answer: person.values[attribute.name]!,
        passageId,
        attribute: attribute.name,
      });
    }
  });
  return { passages, questions: shuffled(rng, questions) };
}

function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The set in the official SQuAD JSON format: one article per person (titled with the name), one paragraph each. */
export function factLookupAsSquad(set: FactLookupSet): Record<string, unknown> {
  const byPassage = new Map<string, FactQuestion[]>();
  for (const q of set.questions) byPassage.set(q.passageId, [...(byPassage.get(q.passageId) ?? []), q]);
  return {
    version: 'fact-lookup-1',
    data: set.passages.map((p) => ({
      title: p.title,
      paragraphs: [
        {
          context: p.text,
          qas: (byPassage.get(p.id) ?? []).map((q) => ({
            id: q.id,
            question: q.question,
            answers: [{ text: q.answer, answer_start: wordOffset(p.text, q.answer) }],
          })),
        },
      ],
    })),
  };
}

/** Offset of `word` where it stands as a whole word (a colour such as "red" can also occur inside a name). */
function wordOffset(text: string, word: string): number {
  const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`\\b${escaped}\\b`).exec(text)?.index ?? text.indexOf(word);
}
