// DOM helpers. Everything the API returns is attacker-controlled (nicknames, OpenIDs, message
// text): it only ever reaches the page as text nodes or attribute values, never as HTML. Nothing
// here parses markup (no innerHTML, insertAdjacentHTML, document.write); the CSP's Trusted Types
// directive makes any such sink throw.

/** Set as a property: a textarea or select has no `value` attribute. (`checked` and `selected`
 * stay attributes: on a new element they set the state too.) */
const PROPS = new Set(['value']);

/**
 * `h('button', { type: 'button', onclick }, 'text', child, [more])`: an element. Strings and
 * numbers become text nodes; `null`, `undefined` and `false` are skipped, arrays flattened.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  append(el, children);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  return el;
}

export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let next = 0;
/** A unique id for label/description links. */
export const uid = (prefix = 'c') => `${prefix}${++next}`;

/**
 * A labelled control: `<div class="field"><label for>text</label>control<p class="hint">`.
 * Every control of the console gets its accessible name this way (or from a fieldset legend
 * plus its own label).
 */
export function field(label, control, { hint, cls } = {}) {
  if (!control.id) control.id = uid('f');
  const hintEl = hint ? h('p', { class: 'hint', id: uid('h') }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: cls ? `field ${cls}` : 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

/** Shows `message` (or clears it) under `control`, linked by aria-describedby. */
export function setFieldError(control, message) {
  const host = control.closest('.field, fieldset') ?? control.parentElement;
  let err = host.querySelector(':scope > .field-error');
  if (!message) {
    control.removeAttribute('aria-invalid');
    err?.remove();
    return;
  }
  if (!err) {
    err = h('p', { class: 'field-error', id: uid('e'), role: 'alert' });
    // In a fieldset the message goes right under its legend, where it is seen.
    const legend = host.querySelector(':scope > legend');
    if (host.tagName === 'FIELDSET' && legend) legend.after(err);
    else host.append(err);
  }
  err.textContent = message;
  if (control.matches('input, select, textarea')) control.setAttribute('aria-invalid', 'true');
  const described = (control.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean);
  if (!described.includes(err.id)) control.setAttribute('aria-describedby', [...described, err.id].join(' '));
}

/** Clears every field error inside `root`. */
export function clearFieldErrors(root) {
  for (const el of root.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of root.querySelectorAll('.field-error')) el.remove();
}

const pad = (n) => String(n).padStart(2, '0');

/** Unix seconds as local `YYYY-MM-DD HH:MM:SS`; '—' when absent. */
export function dateTime(secs) {
  if (secs == null || !Number.isFinite(Number(secs))) return '—';
  const d = new Date(Number(secs) * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in seconds, in words: `45 秒`, `12 分钟`, `3 小时 5 分`, `2 天 4 小时`. */
export function duration(secs) {
  const s = Math.max(0, Math.round(Number(secs)));
  if (s < 60) return `${s} 秒`;
  if (s < 3600) return `${Math.floor(s / 60)} 分钟`;
  if (s < 86400) return `${Math.floor(s / 3600)} 小时 ${Math.floor((s % 3600) / 60)} 分`;
  return `${Math.floor(s / 86400)} 天 ${Math.floor((s % 86400) / 3600)} 小时`;
}

/** `Date` → the value of an `<input type="datetime-local">` (local time, minutes). */
export function localInput(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A button that shows it is busy while `fn` runs, and cannot be pressed twice. */
export async function busy(button, fn) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
