/**
 * A server for the last-resort guard's test: the product's request scope and guard around routes whose callbacks
 * throw where no handler can catch. Prints its port; SIGUSR2 raises an error outside every request.
 */
import { EventEmitter } from 'node:events';
import express from 'express';
import { pino } from 'pino';
import { installLastResortGuard } from '../src/api/index.js';
import { requestScope } from '../src/api/last-resort.js';

const log = pino({ level: 'silent' });
const app = express();
app.use(requestScope());
app.get('/ok', (_req, res) => {
  res.json({ ok: true });
});
app.get('/throw-in-timer', () => {
  setTimeout(() => {
    throw new Error('thrown in a timer of the request');
  }, 5);
});
app.get('/emitter-error', () => {
  setImmediate(() => new EventEmitter().emit('error', new Error('an emitter without an error listener')));
});
app.get('/rejection', () => {
  void Promise.reject(new Error('a rejection nobody handles'));
});
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }));
});
installLastResortGuard(log, () => {
  server.close(() => process.exit(3));
});
process.on('SIGUSR2', () => {
  setTimeout(() => {
    throw new Error('outside every request');
  }, 0);
});
