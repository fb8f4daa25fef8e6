// ESLint flat config: typescript-eslint's recommended rules (syntax only, no type information, so it stays fast)
// over src/, scripts/ and test/, plus a 140-character line limit. `npm run lint` runs it together with madge.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['node_modules/', '.cache/', 'test-output/', 'indexes/', 'models/', 'out/', 'tmp/', 'train-data/', 'public/']),
  {
    files: ['src/**/*.ts', 'scripts/**/*.ts', 'test/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Code and comments wrap at 140; a long string, template, regular expression or URL is one unit and may run past it.
      'max-len': [
        'error',
        {
          code: 140,
          tabWidth: 2,
          ignoreComments: false,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreRegExpLiterals: true,
          ignoreUrls: true,
        },
      ],
      // A leading underscore marks a deliberately unused binding: destructuring to omit a field, Express's four-argument
      // error handler, a callback's positional parameter.
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // Control characters in regular expressions are deliberate: parsers and sanitisers match NUL, C0 controls and
      // separators by code.
      'no-control-regex': 'off',
    },
  },
  {
    // Tests and benchmark scripts read the API's JSON replies as `any` on purpose; src/ stays typed.
    files: ['scripts/**/*.ts', 'test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
