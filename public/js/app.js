/**
 * The playground's wiring: tabs, API key, index status, the streaming Ask flow with its attention views, and
 * search. All server access goes through api.js.
 */
import { apiKeyStore, askStreaming, collectionStore, indexStatus, listCollections, search, uploadFiles } from './api.js';
import { attentionMatrix, normalizeToken, tokenWeights } from './attention.js';
import { describeError } from './errors.js';
import {
  el,
  formatMs,
  formatPercent,
  renderAnswerQuote,
  renderHeatmap,
  renderPassages,
  renderPassageText,
  renderResults,
  renderSources,
  renderTimings,
} from './render.js';

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`playground markup lacks #${id}`);
  return /** @type {T} */ (node);
}

const errorBox = byId('error');

/** @param {unknown} err */
function showError(err) {
  errorBox.textContent = describeError(err);
  errorBox.dataset.visible = 'true';
}

function clearError() {
  errorBox.textContent = '';
  delete errorBox.dataset.visible;
}

/**
 * Reads an optional positive integer field; the server validates it, so anything typed is sent as typed.
 * @param {HTMLInputElement} input
 * @returns {number | undefined}
 */
function optionalNumber(input) {
  return input.value.trim() === '' ? undefined : input.valueAsNumber;
}

// ------------------------------------------------------------------------------------------------------------- tabs

/** Tabs follow the WAI-ARIA tabs pattern: one tab stop, arrows move between tabs. */
function setupTabs() {
  const tabs = /** @type {HTMLButtonElement[]} */ ([...document.querySelectorAll('[role="tab"]')]);
  /** @param {HTMLButtonElement} tab */
  const select = (tab) => {
    // An error belongs to the tab whose action caused it.
    if (tab.getAttribute('aria-selected') !== 'true') clearError();
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute('aria-selected', String(selected));
      t.tabIndex = selected ? 0 : -1;
      const panel = byId(t.getAttribute('aria-controls') ?? '');
      panel.hidden = !selected;
    }
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => select(tab));
    tab.addEventListener('keydown', (event) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      const next = tabs[(moves[/** @type {keyof typeof moves} */ (event.key)] + tabs.length) % tabs.length];
      if (next) {
        select(next);
        next.focus();
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------- API key

function setupApiKey() {
  const form = /** @type {HTMLFormElement} */ (byId('key-form'));
  const input = /** @type {HTMLInputElement} */ (byId('api-key'));
  const state = byId('key-state');
  const show = () => {
    state.textContent = apiKeyStore.get() ? 'key set for this session' : 'no key';
  };
  input.value = apiKeyStore.get();
  show();
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apiKeyStore.set(input.value.trim());
    show();
    void refreshCollections().then(refreshStatus);
  });
  byId('key-clear').addEventListener('click', () => {
    input.value = '';
    apiKeyStore.set('');
    show();
  });
}

// ------------------------------------------------------------------------------------------------------- collections

/** Fills the picker with the collections the key may use; the first entry is always the server's default. */
async function refreshCollections() {
  const select = /** @type {HTMLSelectElement} */ (byId('collection'));
  const chosen = collectionStore.get();
  let listing;
  try {
    listing = await listCollections();
  } catch {
    // No key yet, or an older server: only the default collection can be used.
    listing = { default: '', collections: [] };
  }
  const options = [el('option', { attrs: { value: '' }, text: listing.default ? `${listing.default} (default)` : 'default' })];
  for (const c of listing.collections) {
    if (c.name !== listing.default) options.push(el('option', { attrs: { value: c.name }, text: c.name }));
  }
  select.replaceChildren(...options);
  const available = listing.collections.some((c) => c.name === chosen && c.name !== listing.default);
  select.value = available ? chosen : '';
  if (!available) collectionStore.set('');
}

function setupCollections() {
  const select = /** @type {HTMLSelectElement} */ (byId('collection'));
  select.addEventListener('change', () => {
    collectionStore.set(select.value);
    clearError();
    void refreshStatus();
  });
  void refreshCollections();
}

// ------------------------------------------------------------------------------------------------------ index status

const STATUS_RETRY_MS = 5000;
let statusTimer = 0;

async function refreshStatus() {
  const line = byId('index-status');
  window.clearTimeout(statusTimer);
  try {
    const status = await indexStatus();
    if (status.kind === 'stats') {
      const s = status.body;
      const parts = ['Ready'];
      if (s.collection) parts.push(`collection ${s.collection}`);
      if (typeof s.documents === 'number') parts.push(`${s.documents} documents`);
      if (typeof s.passages === 'number') parts.push(`${s.passages} passages`);
      line.textContent = parts.join(' · ');
      line.dataset.state = 'ready';
      return;
    }
    if (status.kind === 'auth') {
      const what = status.status === 401
        ? (apiKeyStore.get() ? 'The API key was refused' : 'This server needs an API key')
        : 'This API key may not read this collection';
      line.textContent = `${what}${status.message ? ` (${status.message})` : ''}: enter a key under "API key"`;
      line.dataset.state = 'auth';
      return;
    }
    const b = status.body ?? {};
    if (status.status === 200) {
      line.textContent = `Ready · collection ${b.collection ?? '?'} · embedder ${b.embedModel ?? '?'} · reader ${b.readerModel ?? '?'}`;
      line.dataset.state = 'ready';
      return;
    }
    line.textContent = `Service ${b.status ?? `HTTP ${status.status}`}${b.error ? `: ${b.error}` : ''} — checking again shortly`;
    line.dataset.state = b.status === 'failed' ? 'failed' : 'starting';
  } catch (err) {
    line.textContent = `Server unreachable (${err instanceof Error ? err.message : String(err)}) — checking again shortly`;
    line.dataset.state = 'unreachable';
  }
  statusTimer = window.setTimeout(() => void refreshStatus(), STATUS_RETRY_MS);
}

// -------------------------------------------------------------------------------------------------------------- ask

/**
 * @typedef {{token: string, passages: Array<{passageIndex: number, weight: number, topTokens: Array<{token: string, weight: number}>}>}} TokenAttention
 */

class AnswerView {
  constructor() {
    this.section = byId('answer');
    this.text = byId('answer-text');
    this.detail = byId('token-detail');
    this.timings = byId('timings');
    this.meta = byId('answer-meta');
    this.sources = byId('answer-sources');
    this.quote = byId('answer-quote');
    this.heatmapSection = byId('heatmap-section');
    this.heatmap = byId('heatmap');
    this.passagesSection = byId('passages-section');
    this.passageList = byId('passages');
    /** @type {Map<number, HTMLElement>} */
    this.tokenSpans = new Map();
    /** @type {TokenAttention[]} */
    this.attention = [];
    /** @type {import('./render.js').PassageView[]} */
    this.passageViews = [];
    /** @type {HTMLElement[][]} */
    this.heatmapColumns = [];
    /** @type {number | undefined} */
    this.active = undefined;
  }

  start() {
    this.tokenSpans.clear();
    this.attention = [];
    this.passageViews = [];
    this.heatmapColumns = [];
    this.active = undefined;
    this.text.replaceChildren();
    this.detail.textContent = '';
    this.timings.replaceChildren();
    this.meta.textContent = 'Retrieving and reading…';
    this.passageList.replaceChildren();
    renderAnswerQuote(this.quote, undefined, undefined);
    this.heatmap.replaceChildren();
    this.heatmapSection.hidden = true;
    this.passagesSection.hidden = true;
    this.section.hidden = false;
    this.section.dataset.state = 'streaming';
    // Screen readers announce the finished answer once instead of every streamed token.
    this.text.setAttribute('aria-busy', 'true');
  }

  /** @param {{id: number, text: string, index: number}} token */
  appendToken(token) {
    // The end-of-sequence token decodes to nothing: there is no text to hover.
    if (token.text === '') return;
    const span = el('span', { className: 'tok', text: token.text, attrs: { 'data-index': String(token.index) } });
    this.tokenSpans.set(token.index, span);
    this.text.append(span);
  }

  /** @param {any} body the final /v1/ask answer */
  finish(body) {
    const streamed = [...this.tokenSpans.values()].map((s) => s.textContent).join('');
    if (streamed !== body.answer) this.renderTokensFromAttention(body);
    if (body.answer === '') this.text.textContent = '(empty answer)';

    this.attention = body.tokenAttention ?? [];
    /** @type {Array<{passageId: string, docId: string, title: string, answerSpan?: import('./render.js').AnswerSpan}>} */
    const citations = body.citations ?? [];
    const cited = new Set(citations.map((c) => c.passageId));
    /** @type {Map<string, import('./render.js').AnswerSpan>} */
    const spans = new Map();
    for (const c of citations) if (c.answerSpan) spans.set(c.passageId, c.answerSpan);
    this.passageViews = renderPassages(this.passageList, body.passages ?? [], cited, body.attribution, spans);
    renderSources(this.sources, citations);
    // Citations come strongest first: quote the answer from the strongest one it was copied from.
    const quoted = citations.find((c) => c.answerSpan);
    const quotedPassage = this.passageViews.find((v) => v.passage.passageId === quoted?.passageId)?.passage;
    renderAnswerQuote(this.quote, quoted, quotedPassage);
    this.passagesSection.hidden = this.passageViews.length === 0;

    const labels = this.attention.map((t, i) => this.tokenSpans.get(i)?.textContent ?? normalizeToken(t.token));
    this.heatmapColumns = renderHeatmap(this.heatmap, attentionMatrix(this.attention, this.passageViews.length), labels, body.passages ?? []);
    this.heatmapSection.hidden = this.attention.length === 0 || this.passageViews.length === 0;
    this.makeTokensInteractive();

    const t = body.timings ?? {};
    renderTimings(this.timings, [
      ['retrieve', 'Retrieve', t.retrieveMs ?? 0],
      ...(t.rerankMs !== undefined ? [['rerank', 'of which rerank', t.rerankMs]] : []),
      ['encode', 'Encode', t.encodeMs ?? 0],
      ['decode', 'Decode', t.decodeMs ?? 0],
      ['total', 'Total', t.totalMs ?? 0],
    ]);
    this.meta.textContent = `${body.model} · fusion ${body.fusion} · attribution ${body.attribution} · ${cited.size} cited of ${this.passageViews.length} passages`;
    this.section.dataset.state = 'done';
    this.text.setAttribute('aria-busy', 'false');
  }

  /** @param {string} message */
  stop(message) {
    this.meta.textContent = message;
    this.section.dataset.state = 'stopped';
    this.text.setAttribute('aria-busy', 'false');
  }

  /**
   * Without a matching stream (a server that answered in one JSON body), the reported tokens are the spans.
   * @param {any} body
   */
  renderTokensFromAttention(body) {
    this.tokenSpans.clear();
    this.text.replaceChildren();
    /** @type {TokenAttention[]} */ (body.tokenAttention ?? []).forEach((t, index) => this.appendToken({ id: -1, text: t.token, index }));
  }

  /** One tab stop for the whole answer; arrows move between tokens (a long answer would otherwise be dozens of stops). */
  makeTokensInteractive() {
    const entries = [...this.tokenSpans.entries()].filter(([index]) => this.attention[index] !== undefined);
    entries.forEach(([index, span], position) => {
      span.tabIndex = position === 0 ? 0 : -1;
      span.setAttribute('role', 'button');
      span.setAttribute('aria-label', `answer token “${span.textContent ?? ''}”, show its attention`);
      span.addEventListener('mouseenter', () => this.activate(index));
      span.addEventListener('mouseleave', () => this.deactivate(index));
      span.addEventListener('focus', () => this.activate(index));
      span.addEventListener('blur', () => this.deactivate(index));
      span.addEventListener('keydown', (event) => {
        const moves = { ArrowRight: position + 1, ArrowLeft: position - 1, Home: 0, End: entries.length - 1 };
        if (!(event.key in moves)) return;
        event.preventDefault();
        const target = entries[moves[/** @type {keyof typeof moves} */ (event.key)]];
        if (!target) return;
        span.tabIndex = -1;
        target[1].tabIndex = 0;
        target[1].focus();
      });
    });
    this.heatmapColumns.forEach((cells, index) => {
      for (const cell of cells) {
        cell.addEventListener('mouseenter', () => this.activate(index));
        cell.addEventListener('mouseleave', () => this.deactivate(index));
      }
    });
  }

  /** @param {number} index answer token */
  activate(index) {
    if (this.active !== undefined) this.clearHighlight();
    const entry = this.attention[index];
    if (!entry) return;
    this.active = index;
    this.tokenSpans.get(index)?.classList.add('active');
    for (const cell of this.heatmapColumns[index] ?? []) cell.classList.add('active');

    const maxWeight = Math.max(0, ...entry.passages.flatMap((p) => p.topTokens.map((t) => t.weight)));
    const summary = [];
    for (const p of entry.passages) {
      const view = this.passageViews[p.passageIndex];
      if (!view) continue;
      view.li.classList.add('attended');
      view.li.style.setProperty('--attend', p.weight.toFixed(4));
      view.li.dataset.attended = p.weight.toFixed(4);
      renderPassageText(view.textEl, view.passage.text, tokenWeights(p.topTokens), maxWeight, view.span);
      view.topEl.textContent = `Attended tokens: ${p.topTokens.map((t) => `${normalizeToken(t.token) || t.token} ${formatPercent(t.weight)}`).join(', ')}`;
      view.topEl.hidden = p.topTokens.length === 0;
      summary.push(`#${p.passageIndex + 1} ${view.passage.title} ${formatPercent(p.weight)}`);
    }
    const shown = this.tokenSpans.get(index)?.textContent ?? entry.token;
    this.detail.textContent = `“${shown.trim()}” attended most to ${summary.join(', ')}`;
  }

  /** @param {number} index */
  deactivate(index) {
    if (this.active === index) this.clearHighlight();
  }

  clearHighlight() {
    if (this.active === undefined) return;
    this.tokenSpans.get(this.active)?.classList.remove('active');
    for (const cell of this.heatmapColumns[this.active] ?? []) cell.classList.remove('active');
    for (const view of this.passageViews) {
      if (!view.li.classList.contains('attended')) continue;
      view.li.classList.remove('attended');
      view.li.style.removeProperty('--attend');
      delete view.li.dataset.attended;
      renderPassageText(view.textEl, view.passage.text, undefined, 0, view.span);
      view.topEl.hidden = true;
    }
    this.detail.textContent = '';
    this.active = undefined;
  }
}

function setupAsk() {
  const form = /** @type {HTMLFormElement} */ (byId('ask-form'));
  const question = /** @type {HTMLTextAreaElement} */ (byId('question'));
  const mode = /** @type {HTMLSelectElement} */ (byId('ask-mode'));
  const k = /** @type {HTMLInputElement} */ (byId('ask-k'));
  const fusion = /** @type {HTMLSelectElement} */ (byId('ask-fusion'));
  const maxTokens = /** @type {HTMLInputElement} */ (byId('ask-max-tokens'));
  const beams = /** @type {HTMLInputElement} */ (byId('ask-beams'));
  const temperature = /** @type {HTMLInputElement} */ (byId('ask-temperature'));
  const seed = /** @type {HTMLInputElement} */ (byId('ask-seed'));
  const rerank = rerankControl('ask');
  const askButton = /** @type {HTMLButtonElement} */ (byId('ask-button'));
  const stopButton = /** @type {HTMLButtonElement} */ (byId('ask-stop'));
  const view = new AnswerView();
  /** @type {AbortController | undefined} */
  let running;

  question.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stopButton.addEventListener('click', () => running?.abort());

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    running?.abort();
    const controller = new AbortController();
    running = controller;
    clearError();
    view.start();
    askButton.disabled = true;
    stopButton.hidden = false;
    const request = {
      question: question.value,
      mode: mode.value,
      fusion: fusion.value,
      k: optionalNumber(k),
      maxNewTokens: optionalNumber(maxTokens),
      numBeams: optionalNumber(beams),
      temperature: optionalNumber(temperature),
      seed: optionalNumber(seed),
      rerank: rerank(),
    };
    try {
      const body = await askStreaming(request, { onToken: (t) => view.appendToken(t), signal: controller.signal });
      if (running === controller) view.finish(body);
    } catch (err) {
      if (running !== controller) return;
      if (err instanceof Error && err.name === 'AbortError') {
        view.stop('Stopped.');
      } else {
        view.stop('No answer.');
        showError(err);
      }
    } finally {
      if (running === controller) {
        running = undefined;
        askButton.disabled = false;
        stopButton.hidden = true;
      }
    }
  });
}

// ----------------------------------------------------------------------------------------------------------- search

/**
 * The rerank toggle of a form: returns the request's `rerank` (undefined when off); the top-N field is only enabled
 * while the toggle is on.
 * @param {'ask' | 'search'} prefix
 * @returns {() => {topN: number} | undefined}
 */
function rerankControl(prefix) {
  const toggle = /** @type {HTMLInputElement} */ (byId(`${prefix}-rerank`));
  const topN = /** @type {HTMLInputElement} */ (byId(`${prefix}-rerank-topn`));
  const sync = () => (topN.disabled = !toggle.checked);
  toggle.addEventListener('change', sync);
  sync();
  return () => (toggle.checked ? { topN: optionalNumber(topN) ?? 50 } : undefined);
}

function setupSearch() {
  const form = /** @type {HTMLFormElement} */ (byId('search-form'));
  const query = /** @type {HTMLInputElement} */ (byId('query'));
  const mode = /** @type {HTMLSelectElement} */ (byId('search-mode'));
  const k = /** @type {HTMLInputElement} */ (byId('search-k'));
  const rerank = rerankControl('search');
  const meta = byId('search-meta');
  const list = byId('results');
  const button = /** @type {HTMLButtonElement} */ (byId('search-button'));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    button.disabled = true;
    meta.textContent = 'Searching…';
    list.dataset.state = 'searching';
    try {
      const body = await search({ query: query.value, mode: mode.value, k: optionalNumber(k), rerank: rerank() });
      renderResults(list, body.results);
      const t = body.timings;
      const reranked = t.rerankMs !== undefined ? ` · rerank ${formatMs(t.rerankMs)}` : '';
      meta.textContent = `${body.results.length} result${body.results.length === 1 ? '' : 's'} · embed ${formatMs(t.embedMs)} · search ${formatMs(t.searchMs)}${reranked} · total ${formatMs(t.totalMs)}`;
      list.dataset.state = 'done';
    } catch (err) {
      meta.textContent = '';
      list.replaceChildren();
      list.dataset.state = 'failed';
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
}

// ----------------------------------------------------------------------------------------------------------- upload

function setupUpload() {
  const form = /** @type {HTMLFormElement} */ (byId('upload-form'));
  const input = /** @type {HTMLInputElement} */ (byId('upload-files'));
  const meta = byId('upload-meta');
  const list = byId('upload-results');
  const button = /** @type {HTMLButtonElement} */ (byId('upload-button'));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    const files = [...(input.files ?? [])];
    if (files.length === 0) {
      meta.textContent = 'Choose one or more files first.';
      return;
    }
    button.disabled = true;
    meta.textContent = `Uploading ${files.length} file${files.length === 1 ? '' : 's'}…`;
    list.replaceChildren();
    try {
      const body = await uploadFiles(files);
      /** @type {Array<{id: string, status: string, passages?: number, error?: string}>} */
      const outcomes = body.documents ?? [];
      for (const d of outcomes) {
        const detail = d.status === 'error' ? d.error ?? 'error' : `${d.passages ?? 0} passages`;
        list.append(
          el('li', { className: 'upload-result', attrs: { 'data-status': d.status, 'data-id': d.id } }, [
            el('span', { className: 'doc-id', text: d.id }),
            el('span', { className: `badge status-${d.status}`, text: d.status }),
            el('span', { className: 'upload-detail', text: detail }),
          ]),
        );
      }
      const ok = outcomes.filter((d) => d.status !== 'error').length;
      meta.textContent = `${ok} of ${outcomes.length} document${outcomes.length === 1 ? '' : 's'} indexed`;
      void refreshStatus();
    } catch (err) {
      meta.textContent = '';
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
}

setupTabs();
setupApiKey();
setupCollections();
setupAsk();
setupSearch();
setupUpload();
void refreshStatus();
