/**
 * The Python trainer's own unit tests (scripts/train/test_trainer.py), run where PyTorch is installed. CI has no
 * PyTorch: there the committed trained reader and the exporter are what the suite checks.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const PYTHON = '/usr/bin/python3';
const TRAIN_DIR = path.resolve('scripts/train');
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

const title = hasTorch ? 'the PyTorch trainer' : `the PyTorch trainer (skipped: ${PYTHON} cannot import torch; CI needs no PyTorch)`;

describe.skipIf(!hasTorch)(title, () => {
  it('passes its unit tests: HF checkpoint loading, FiD memory, curriculum, a training run that resumes and exports', () => {
    const run = spawnSync(PYTHON, ['-m', 'unittest', 'test_trainer'], {
      cwd: TRAIN_DIR,
      encoding: 'utf8',
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    });
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
  }, 240_000);
});
