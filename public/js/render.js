/**
 * DOM builders. Every piece of text from the API goes in through textContent (never innerHTML), so passage text
 * that contains markup shows as text.
 */
import { quoteAround, splitAtSpan } from './answer-span.js';
import { highlightSegments } from './attention.js';

/** @typedef {{start: number, end: number}} AnswerSpan offsets into a passage's text */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {{className?: string, text?: string, attrs?: Record<string, string>}} [props]
 * @param {Array<Node>} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined) node.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

/** @param {number} ms */
export function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

/** @param {number} fraction */
export function formatPercent(fraction) {
  return `${(fraction * 100).toFixed(1)}%`;
}

/**
 * @param {HTMLElement} dl
 * @param {Array<[string, string, number]>} entries key, label, milliseconds
 */
export function renderTimings(dl, entries) {
  dl.replaceChildren();
  for (const [key, label, ms] of entries) {
    const item = el('div', { className: 'timing', attrs: { 'data-stage': key } }, [
      el('dt', { text: label }),
      el('dd', { text: formatMs(ms), attrs: { 'data-ms': String(ms) } }),
    ]);
    dl.append(item);
  }
}

/**
 * One highlight segment: plain text, or a `<mark>` whose background alpha is the attended token's weight relative to
 * the heaviest token of that answer token.
 * @param {{text: string, weight?: number, token?: string}} segment
 * @param {number} maxWeight
 * @returns {Node}
 */
function segmentNode(segment, maxWeight) {
  if (segment.weight === undefined) return document.createTextNode(segment.text);
  const alpha = Math.min(1, segment.weight / maxWeight) * 0.9;
  const mark = el('mark', {
    text: segment.text,
    attrs: {
      'data-token': segment.token ?? '',
      'data-weight': segment.weight.toFixed(6),
      title: `attention ${formatPercent(segment.weight)} to “${segment.token ?? segment.text}”`,
    },
  });
  mark.style.backgroundColor = `rgba(250, 190, 20, ${alpha.toFixed(3)})`;
  return mark;
}

/**
 * The passage text, with the words an answer token attended to wrapped in `<mark>` (see segmentNode) and, for a
 * passage the answer was copied from, the answer's span wrapped in `<mark class="answer-span">` around them.
 * @param {HTMLElement} target
 * @param {string} text
 * @param {Map<string, number>} [weights] normalized token → attention weight
 * @param {number} [maxWeight]
 * @param {AnswerSpan} [span] the answer's offsets in `text`
 */
export function renderPassageText(target, text, weights, maxWeight = 0, span) {
  const shaded = weights !== undefined && weights.size > 0 && maxWeight > 0;
  const segments = shaded ? highlightSegments(text, weights) : [{ text }];
  /** @param {Array<{text: string, weight?: number, token?: string}>} list */
  const nodes = (list) => list.map((segment) => segmentNode(segment, maxWeight));
  if (!span) {
    target.replaceChildren(...nodes(segments));
    return;
  }
  const { before, inside, after } = splitAtSpan(segments, span);
  const mark = el('mark', { className: 'answer-span', attrs: { title: 'the answer, as it stands in this passage' } }, nodes(inside));
  target.replaceChildren(...nodes(before), mark, ...nodes(after));
}

/**
 * "p. 3" or "p. 3–4" for passages of paged documents (PDF); empty otherwise.
 * @param {{pageStart?: number, pageEnd?: number}} p
 */
export function formatPages(p) {
  if (typeof p.pageStart !== 'number') return '';
  const end = typeof p.pageEnd === 'number' ? p.pageEnd : p.pageStart;
  return end > p.pageStart ? `p. ${p.pageStart}\u2013${end}` : `p. ${p.pageStart}`;
}

/**
 * The heading path below the title: "Install › Linux" (a first heading equal to the title is not repeated).
 * @param {{title?: string, section?: string[]}} p
 */
export function formatSection(p) {
  if (!Array.isArray(p.section)) return '';
  const rest = p.section[0] === p.title ? p.section.slice(1) : p.section;
  return rest.join(' \u203a ');
}

/**
 * Where a passage sits: its heading path ("Install › Linux") and page range, as spans for a facts line.
 * @param {{title?: string, pageStart?: number, pageEnd?: number, section?: string[]}} p
 * @returns {HTMLElement[]}
 */
export function locationFacts(p) {
  const facts = [];
  const section = formatSection(p);
  if (section) facts.push(el('span', { className: 'section', text: section }));
  const pages = formatPages(p);
  if (pages) facts.push(el('span', { className: 'pages', text: pages }));
  return facts;
}

/**
 * @typedef {{passageId: string, docId: string, title: string, text: string, retrievalScore: number, rerankScore?: number, attention: number, pageStart?: number, pageEnd?: number, section?: string[]}} AnswerPassage
 * @typedef {{li: HTMLLIElement, textEl: HTMLElement, topEl: HTMLElement, passage: AnswerPassage, span?: AnswerSpan}} PassageView
 */

/**
 * @param {HTMLElement} list
 * @param {AnswerPassage[]} passages
 * @param {Set<string>} cited passage ids the answer cites
 * @param {string} attribution how the shares were measured
 * @param {Map<string, AnswerSpan>} [spans] per cited passage id, where the answer occurs in its text
 * @returns {PassageView[]}
 */
export function renderPassages(list, passages, cited, attribution, spans = new Map()) {
  list.replaceChildren();
  return passages.map((passage, index) => {
    const percent = passage.attention * 100;
    const fill = el('span', { className: 'share-fill' });
    fill.style.width = `${Math.max(0, Math.min(100, percent))}%`;
    const share = el(
      'div',
      {
        className: 'share',
        attrs: {
          'data-share': percent.toFixed(2),
          role: 'img',
          'aria-label': `${formatPercent(passage.attention)} of the ${attribution} attribution`,
        },
      },
      [el('span', { className: 'share-bar' }, [fill]), el('span', { className: 'share-text', text: formatPercent(passage.attention) })],
    );
    const heading = el('div', { className: 'passage-head' }, [
      el('span', { className: 'passage-rank', text: `#${index + 1}` }),
      el('h3', { className: 'passage-title', text: passage.title || passage.docId }),
    ]);
    if (cited.has(passage.passageId)) heading.append(el('span', { className: 'badge', text: 'cited' }));
    const facts = el('p', { className: 'passage-facts' }, [
      ...locationFacts(passage),
      el('span', { className: 'doc-id', text: passage.docId }),
      el('span', { className: 'passage-id', text: passage.passageId }),
      el('span', { className: 'score', text: `retrieval ${passage.retrievalScore.toFixed(4)}` }),
      ...(passage.rerankScore !== undefined ? [el('span', { className: 'score rerank-score', text: `rerank ${passage.rerankScore.toFixed(4)}` })] : []),
    ]);
    const textEl = el('p', { className: 'passage-text' });
    const span = spans.get(passage.passageId);
    renderPassageText(textEl, passage.text, undefined, 0, span);
    const topEl = el('p', { className: 'passage-top', attrs: { hidden: '' } });
    const li = el(
      'li',
      {
        className: 'passage',
        attrs: { 'data-passage-id': passage.passageId, 'data-index': String(index), ...(cited.has(passage.passageId) ? { 'data-cited': 'true' } : {}) },
      },
      [heading, facts, share, topEl, textEl],
    );
    list.append(li);
    return { li, textEl, topEl, passage, span };
  });
}

/**
 * Passages as rows, answer tokens as columns, each cell shaded by the token's attention share on the passage.
 * @param {HTMLElement} container
 * @param {number[][]} matrix token × passage shares
 * @param {string[]} tokenLabels
 * @param {AnswerPassage[]} passages
 * @returns {HTMLElement[][]} cells per token (column)
 */
export function renderHeatmap(container, matrix, tokenLabels, passages) {
  container.replaceChildren();
  const columns = matrix.length;
  container.style.setProperty('--columns', String(columns));
  container.setAttribute('role', 'img');
  container.setAttribute('aria-label', `Cross-attention of ${columns} answer tokens over ${passages.length} passages`);
  /** @type {HTMLElement[][]} */
  const byToken = Array.from({ length: columns }, () => []);

  container.append(el('span', { className: 'hm-corner' }));
  tokenLabels.forEach((label, t) => {
    const head = el('span', { className: 'hm-token', text: label.trim() || '·', attrs: { 'data-token-index': String(t), title: label } });
    byToken[t]?.push(head);
    container.append(head);
  });
  passages.forEach((passage, p) => {
    container.append(el('span', { className: 'hm-passage', text: `#${p + 1}`, attrs: { title: passage.title || passage.docId } }));
    for (let t = 0; t < columns; t++) {
      const weight = matrix[t]?.[p] ?? 0;
      const cell = el('span', {
        className: 'hm-cell',
        attrs: {
          'data-token-index': String(t),
          'data-passage-index': String(p),
          'data-weight': weight.toFixed(4),
          title: `“${tokenLabels[t] ?? ''}” → #${p + 1} ${passage.title}: ${formatPercent(weight)}`,
        },
      });
      cell.style.setProperty('--w', weight.toFixed(4));
      byToken[t]?.push(cell);
      container.append(cell);
    }
  });
  return byToken;
}

/**
 * @param {HTMLElement} list
 * @param {Array<{passageId: string, docId: string, title: string, text: string, score: number, rerankScore?: number, pageStart?: number, pageEnd?: number, section?: string[]}>} results
 */
export function renderResults(list, results) {
  list.replaceChildren();
  results.forEach((r, i) => {
    list.append(
      el('li', { className: 'result', attrs: { 'data-passage-id': r.passageId } }, [
        el('div', { className: 'passage-head' }, [
          el('span', { className: 'passage-rank', text: `#${i + 1}` }),
          el('h3', { className: 'passage-title', text: r.title || r.docId }),
          el('span', { className: 'score result-score', text: r.score.toFixed(4), attrs: { 'data-score': String(r.score) } }),
          ...(r.rerankScore !== undefined
            ? [el('span', { className: 'score rerank-score', text: `rerank ${r.rerankScore.toFixed(4)}`, attrs: { 'data-rerank-score': String(r.rerankScore) } })]
            : []),
        ]),
        el('p', { className: 'passage-facts' }, [
          ...locationFacts(r),
          el('span', { className: 'doc-id', text: r.docId }),
          el('span', { className: 'passage-id', text: r.passageId }),
        ]),
        el('p', { className: 'passage-text', text: r.text }),
      ]),
    );
  });
}

/**
 * "Sources: report.pdf p. 3–4 (Results › Table 2) · guide.md (Install)" — the cited passages with where they sit.
 * @param {HTMLElement} target
 * @param {Array<{passageId: string, docId: string, title: string, score: number, pageStart?: number, pageEnd?: number, section?: string[]}>} citations
 */
export function renderSources(target, citations) {
  target.replaceChildren();
  target.hidden = citations.length === 0;
  if (citations.length === 0) return;
  target.append(el('span', { className: 'sources-label', text: 'Sources:' }));
  for (const c of citations) {
    const where = [formatPages(c), formatSection(c)]
      .filter((s) => s !== '')
      .join(', ');
    target.append(
      el('span', { className: 'source', attrs: { 'data-passage-id': c.passageId, title: `${formatPercent(c.score)} of the cited attention` } }, [
        el('span', { className: 'source-doc', text: c.title || c.docId }),
        ...(where ? [el('span', { className: 'source-where', text: where })] : []),
      ]),
    );
  }
}

/**
 * The answer quoted in its source: up to QUOTE_CONTEXT characters of the passage on each side of the span, the span
 * in `<mark class="answer-span">`, and the source's title, document and location below. Hidden without a span.
 * @param {HTMLElement} target
 * @param {{passageId: string, docId: string, title: string, answerSpan?: AnswerSpan, pageStart?: number, pageEnd?: number, section?: string[]} | undefined} citation
 * @param {AnswerPassage | undefined} passage the cited passage, whose text the span indexes
 */
export function renderAnswerQuote(target, citation, passage) {
  target.replaceChildren();
  const span = citation?.answerSpan;
  target.hidden = !citation || !span || !passage;
  if (!citation || !span || !passage) {
    delete target.dataset.passageId;
    return;
  }
  const quote = quoteAround(passage.text, span);
  const where = [formatPages(citation), formatSection(citation)].filter((s) => s !== '').join(', ');
  const title = citation.title || citation.docId;
  target.dataset.passageId = citation.passageId;
  target.append(
    el('blockquote', { className: 'quote-text' }, [
      document.createTextNode(quote.before),
      el('mark', { className: 'answer-span', text: quote.answer }),
      document.createTextNode(quote.after),
    ]),
    el('figcaption', { className: 'quote-source' }, [
      el('span', { className: 'quote-title', text: title }),
      ...(title !== citation.docId ? [el('span', { className: 'doc-id', text: citation.docId })] : []),
      ...(where ? [el('span', { className: 'source-where', text: where })] : []),
    ]),
  );
}
