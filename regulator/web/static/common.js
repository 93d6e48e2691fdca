/* Shared helpers of the consoles: API calls (cookie + X-CSRF-Token), live events
 * (EventSource), DOM building without innerHTML, the API's French validation
 * messages next to their fields, and times in the MMG's time zone. Exposed as window.Regulator. */
(function () {
  'use strict';

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') || '' : '';
  }

  function newKey() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function sessionExpired() {
    const banner = document.getElementById('session-expired');
    if (!banner) return;
    const link = banner.querySelector('a');
    if (link) link.href = '/console/login?next=' + encodeURIComponent(location.pathname + location.search);
    banner.hidden = false;
  }

  /* fetch() wrapper: JSON in and out, CSRF header on writes, never throws. */
  async function api(method, url, body, idempotencyKey) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') {
      headers['X-CSRF-Token'] = csrf();
      headers['Content-Type'] = 'application/json';
    }
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
    let resp;
    try {
      resp = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (err) {
      return { ok: false, status: 0, data: { message: 'Serveur injoignable : vérifiez le réseau puis réessayez.' } };
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (err) {
      data = null;
    }
    if (resp.status === 401) sessionExpired();
    return { ok: resp.ok, status: resp.status, data: data || {} };
  }

  /* el('td', {class: 'num', text: '3'}, child…): attributes set safely, text as text. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clearErrors(form) {
    form.querySelectorAll('[aria-invalid="true"]').forEach((n) => n.removeAttribute('aria-invalid'));
    form.querySelectorAll('.field-error').forEach((n) => {
      n.textContent = '';
      n.hidden = true;
    });
    const alert = form.querySelector('.form-alert');
    if (alert) {
      alert.textContent = '';
      alert.hidden = true;
    }
  }

  /* Show the 422 `errors` list next to the fields (data-field / data-error-for). */
  function showErrors(form, errors, fallback) {
    clearErrors(form);
    let first = null;
    const general = [];
    for (const error of errors || []) {
      const field = error.field || '';
      const message = sentence(String(error.message || 'Valeur invalide.'));
      const input = field ? form.querySelector(`[data-field="${CSS.escape(field)}"]`) : null;
      const slot = field ? form.querySelector(`[data-error-for="${CSS.escape(field)}"]`) : null;
      if (input && slot) {
        input.setAttribute('aria-invalid', 'true');
        slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
        slot.hidden = false;
        if (!first) first = input;
      } else {
        general.push(field && field !== 'mmg' ? `${field} : ${message}` : message);
      }
    }
    const alert = form.querySelector('.form-alert');
    if (alert) {
      const count = (errors || []).length - general.length;
      const parts = [];
      if (count > 0) parts.push(count === 1 ? 'Un champ est à corriger.' : `${count} champs sont à corriger.`);
      if (fallback && general.length === 0 && count === 0) parts.push(fallback);
      parts.push(...general);
      alert.textContent = parts.join(' ');
      alert.hidden = parts.length === 0;
    }
    if (first) first.focus();
  }

  /* End a message with one full stop, even after initials such as "M. D.". */
  function sentence(text) {
    return /[.!?…]$/.test(text) ? text : `${text}.`;
  }

  function say(node, text, isError) {
    if (!node) return;
    node.textContent = text ? sentence(text) : '';
    node.classList.toggle('error', Boolean(isError));
  }

  /* Live events. EventSource reconnects by itself with Last-Event-ID; if the server
   * refused the stream (session expired, restart), start a new one a bit later. */
  function live(url, handlers, onOpen) {
    const status = document.getElementById('live-status');
    const show = (text, state) => {
      if (status) {
        status.textContent = text;
        status.dataset.state = state;
      }
    };
    let lastId = null;
    let source = null;
    let retry = null;
    function connect() {
      const sep = url.includes('?') ? '&' : '?';
      source = new EventSource(lastId ? `${url}${sep}last_event_id=${encodeURIComponent(lastId)}` : url);
      source.addEventListener('open', () => {
        show('Temps réel : connecté', 'open');
        if (onOpen) onOpen();
      });
      source.addEventListener('error', () => {
        if (source.readyState === EventSource.CLOSED) {
          show('Temps réel : interrompu, nouvelle tentative…', 'closed');
          api('GET', '/console/state.json');  // shows the session banner on 401
          clearTimeout(retry);
          retry = setTimeout(connect, 5000);
        } else {
          show('Temps réel : connexion perdue, reconnexion…', 'reconnecting');
        }
      });
      for (const [kind, handler] of Object.entries(handlers)) {
        source.addEventListener(kind, (event) => {
          if (event.lastEventId) lastId = event.lastEventId;
          let data;
          try {
            data = JSON.parse(event.data);
          } catch (err) {
            return;
          }
          handler(data);
        });
      }
    }
    show('Connexion au flux temps réel…', 'connecting');
    connect();
    window.addEventListener('pagehide', () => source && source.close());
  }

  function time(iso, tz) {
    if (!iso) return '';
    const options = { hour: '2-digit', minute: '2-digit' };
    if (tz) options.timeZone = tz;
    return new Intl.DateTimeFormat('fr-FR', options).format(new Date(iso));
  }

  function dateTime(iso, tz) {
    if (!iso) return '';
    const options = { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
    if (tz) options.timeZone = tz;
    return new Intl.DateTimeFormat('fr-FR', options).format(new Date(iso));
  }

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  /* Minutes east of UTC of time zone `tz` at instant `date`. */
  function offsetMinutes(date, tz) {
    const parts = {};
    new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    }).formatToParts(date).forEach((p) => { parts[p.type] = p.value; });
    const asUtc = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second);
    return Math.round((asUtc - date.getTime()) / 60000);
  }

  /* "2026-11-24T21:30" read as wall time in `tz` → ISO 8601 with that zone's offset. */
  function zonedToIso(value, tz) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value || '');
    if (!m) return null;
    if (!tz) return new Date(value).toISOString();
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    let offset = offsetMinutes(new Date(wall), tz);
    offset = offsetMinutes(new Date(wall - offset * 60000), tz);
    const sign = offset >= 0 ? '+' : '-';
    const abs = Math.abs(offset);
    return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }

  /* The status and the outcome in the API's French words (status_label, outcome_label). */
  function statusBadge(ref) {
    let text = ref.status_label || ref.status;
    if (ref.status === 'completed' && ref.outcome) text += ` — ${ref.outcome_label || ref.outcome}`;
    return el('span', { class: `status status-${ref.status}`, 'data-status': ref.status, text });
  }

  /* Refresh each MMG's open/closed state and pharmacy on duty (server-computed). */
  async function refreshState() {
    const res = await api('GET', '/console/state.json');
    if (!res.ok) return;
    for (const s of res.data.mmgs || []) {
      const stateCell = document.querySelector(`[data-state-for="${CSS.escape(s.mmg)}"]`);
      if (stateCell) {
        const badge = stateCell.querySelector('[data-role="state-label"]');
        const reason = stateCell.querySelector('[data-role="state-reason"]');
        if (badge) {
          badge.textContent = s.state_label;
          badge.className = `badge badge-${s.open ? 'open' : 'closed'}`;
        }
        if (reason) reason.textContent = `${s.day_type_label} — ${s.reason}`;
      }
      const pharmacyCell = document.querySelector(`[data-pharmacy-for="${CSS.escape(s.mmg)}"]`);
      if (pharmacyCell) {
        pharmacyCell.replaceChildren(
          ...(s.pharmacy_name
            ? [el('span', { 'data-role': 'pharmacy-name', text: s.pharmacy_name }), ' — ',
              el('a', { 'data-role': 'pharmacy-number', href: `tel:${s.pharmacy_number}`, text: s.pharmacy_display })]
            : [el('span', { 'data-role': 'pharmacy-name', text: 'Aucune pharmacie au tableau de garde' }),
              ' : composer le ', el('strong', { 'data-role': 'pharmacy-number', text: s.pharmacy_display })]),
        );
      }
    }
  }

  function every(ms, fn) {
    setInterval(() => {
      if (!document.hidden) fn();
    }, ms);
  }

  window.Regulator = {
    api, el, clearErrors, showErrors, say, sentence, live, time, dateTime, zonedToIso,
    newKey, statusBadge, refreshState, every,
  };
})();
