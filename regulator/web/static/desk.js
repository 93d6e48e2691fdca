/* Front-desk console: calls put through to the desk as they happen (with their
 * ground, and for an overflow what to ask), incoming regulated referrals (visible and
 * audible alert), acknowledge / arrived / outcome, walk-in visits, today's counters. */
(function () {
  'use strict';
  const R = window.Regulator;
  const { el } = R;

  const root = document.getElementById('desk');
  const mmg = root.dataset.mmg;
  const tz = root.dataset.tz;
  /* Statuses kept on the board (core/referrals.py ON_THE_DESK, given by the page). */
  const ACTIVE = (root.dataset.active || '').split(' ');
  /* The outcome choices, worded by the server (the walk-in form's own options). */
  const OUTCOMES = Array.from(document.querySelectorAll('#v-outcome option'))
    .filter((option) => option.value)
    .map((option) => [option.value, option.textContent]);

  /* ------------------------------------------------------- sound + alert */
  let audio = null;
  let soundOn = false;
  const soundButton = document.getElementById('sound-toggle');
  const soundHint = document.getElementById('sound-hint');
  let beeps = 0;

  function audioContext() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === 'suspended') audio.resume();
    return audio;
  }

  /* Three short tones made with the Web Audio API: no sound file to fetch. */
  function beep() {
    if (!soundOn) return;
    const ctx = audioContext();
    if (!ctx) return;
    const start = ctx.currentTime + 0.02;
    [0, 0.22, 0.44].forEach((delay, i) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = i === 2 ? 1175 : 880;
      gain.gain.setValueAtTime(0.0001, start + delay);
      gain.gain.exponentialRampToValueAtTime(0.35, start + delay + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + delay + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + delay);
      osc.stop(start + delay + 0.2);
    });
    beeps += 1;
    document.body.dataset.beeps = String(beeps);
  }

  function setSound(on) {
    soundOn = on;
    soundButton.setAttribute('aria-pressed', on ? 'true' : 'false');
    soundButton.textContent = on ? 'Alerte sonore activée' : "Activer l'alerte sonore";
    soundHint.textContent = on ? 'Un signal retentit à chaque nouvelle orientation.' : 'Le navigateur exige un clic pour autoriser le son.';
    try {
      window.localStorage.setItem('regulator.sound', on ? '1' : '0');
    } catch (err) { /* private mode */ }
  }

  soundButton.addEventListener('click', () => {
    const on = !soundOn;
    if (on) audioContext();  // created inside the click: allowed by autoplay rules
    setSound(on);
    if (on) beep();
  });
  try {
    if (window.localStorage.getItem('regulator.sound') === '1') {
      // Remembered choice: the context can only start at the next user gesture.
      const unlock = () => {
        audioContext();
        setSound(true);
      };
      document.addEventListener('pointerdown', unlock, { once: true });
      document.addEventListener('keydown', unlock, { once: true });
    }
  } catch (err) { /* private mode */ }

  const alertBox = document.getElementById('alert');
  const alertText = alertBox.querySelector('.alert-text');
  let unseen = 0;
  const baseTitle = document.title;

  function updateTitle() {
    document.title = unseen > 0 ? `(${unseen}) Nouvelle orientation — ${baseTitle}` : baseTitle;
  }

  function raiseAlert(text) {
    alertText.textContent = text;
    alertBox.hidden = false;
    alertBox.classList.remove('pulse');
    void alertBox.offsetWidth;  // restart the animation
    alertBox.classList.add('pulse');
    beep();
  }

  function dismissAlert() {
    alertBox.hidden = true;
    unseen = 0;
    updateTitle();
    document.querySelectorAll('.card.is-new').forEach((c) => c.classList.remove('is-new'));
  }
  document.getElementById('alert-dismiss').addEventListener('click', dismissAlert);

  /* ----------------------------------------------------------- referrals */
  const referrals = new Map();
  const list = document.getElementById('incoming');
  const empty = document.getElementById('incoming-empty');
  const listStatus = document.getElementById('incoming-status');

  function fact(label, value) {
    if (value === null || value === undefined || value === '') return [];
    return [el('dt', {}, label), el('dd', {}, value)];
  }

  async function act(ref, action, body, button) {
    // aria-disabled rather than disabled: a disabled button would lose the keyboard focus.
    if (button) {
      if (button.getAttribute('aria-disabled') === 'true') return { ok: false, status: -1, data: {} };
      button.setAttribute('aria-disabled', 'true');
    }
    const res = await R.api('POST', `/api/v1/referrals/${encodeURIComponent(ref.id)}/${action}`, body || {}, R.newKey());
    if (button) button.removeAttribute('aria-disabled');
    if (res.ok) {
      upsert(res.data, false);
      refreshCounters();
      return res;
    }
    if (res.status !== 422) R.say(listStatus, res.data.message || `Action impossible (erreur ${res.status}).`, true);
    return res;
  }

  function outcomeForm(ref) {
    const id = ref.id;
    const radios = OUTCOMES.map(([value, label], i) => el('div', { class: 'radio' },
      el('input', {
        type: 'radio', name: 'outcome', value, id: `o-${id}-${value}`, 'data-field': i === 0 ? 'outcome' : null,
        'aria-describedby': `o-${id}-error`,
      }),
      el('label', { for: `o-${id}-${value}` }, label)));
    const form = el('form', { class: 'outcome-form', novalidate: true, hidden: true },
      el('p', { class: 'form-alert', role: 'alert', hidden: true }),
      el('fieldset', {},
        el('legend', {}, 'Issue de la consultation'),
        ...radios,
        el('p', { class: 'field-error', id: `o-${id}-error`, 'data-error-for': 'outcome', hidden: true })),
      el('div', { class: 'field' },
        el('label', { for: `a-${id}` }, "Nombre d'actes"),
        el('input', {
          id: `a-${id}`, name: 'acts', type: 'number', min: '0', max: '20', value: '1', inputmode: 'numeric',
          'data-field': 'acts', 'aria-describedby': `a-${id}-error`,
        }),
        el('p', { class: 'field-error', id: `a-${id}-error`, 'data-error-for': 'acts', hidden: true })),
      el('div', { class: 'actions' },
        el('button', { type: 'submit', class: 'primary' }, "Enregistrer l'issue"),
        el('button', { type: 'button', class: 'secondary', onclick: () => { form.hidden = true; } }, 'Fermer')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const chosen = form.querySelector('input[name="outcome"]:checked');
      const actsRaw = form.elements.acts.value.trim();
      const body = {};
      if (chosen) body.outcome = chosen.value;
      if (actsRaw !== '') body.acts = /^\d+$/.test(actsRaw) ? Number(actsRaw) : actsRaw;
      R.clearErrors(form);
      const res = await act(ref, 'outcome', body, form.querySelector('button[type="submit"]'));
      if (res.status === 422) R.showErrors(form, res.data.errors);
      else if (res.ok) R.say(listStatus, `Issue enregistrée pour ${ref.patient.display_name}`);
    });
    return form;
  }

  function card(ref, isNew) {
    const headingId = `h-${ref.id}`;
    const age = ref.patient.age_band ? ` (${ref.patient.age_band} ans)` : '';
    const actions = el('div', { class: 'actions' });
    let form = null;
    if (ref.status === 'pending') {
      actions.append(el('button', {
        type: 'button', class: 'secondary', 'data-action': 'ack', 'aria-describedby': headingId,
        onclick: (e) => act(ref, 'ack', {}, e.currentTarget).then(dismissIfSeen),
      }, 'Accuser réception'));
    }
    if (ref.status === 'pending' || ref.status === 'acknowledged') {
      actions.append(el('button', {
        type: 'button', class: 'primary', 'data-action': 'arrived', 'aria-describedby': headingId,
        onclick: (e) => act(ref, 'arrived', {}, e.currentTarget).then((res) => {
          if (res.ok) R.say(listStatus, `Patient arrivé : ${ref.patient.display_name}`);
          dismissIfSeen();
        }),
      }, 'Patient arrivé'));
    }
    if (ref.status === 'arrived') {
      form = outcomeForm(ref);
      actions.append(el('button', {
        type: 'button', class: 'primary', 'data-action': 'outcome', 'aria-describedby': headingId,
        'aria-expanded': 'false',
        onclick: (e) => {
          form.hidden = !form.hidden;
          e.currentTarget.setAttribute('aria-expanded', form.hidden ? 'false' : 'true');
          if (!form.hidden) form.querySelector('input[name="outcome"]').focus();
        },
      }, 'Issue'));
    }
    const expected = ref.expected_at ? R.time(ref.expected_at, tz) : null;
    const callback = ref.callback_number
      ? el('a', { href: `tel:${ref.callback_number}` }, ref.callback_number) : null;
    return el('li', {
      class: `card${isNew ? ' is-new' : ''}`, tabindex: '-1', 'data-id': ref.id, 'data-case': ref.case_id,
      'data-status': ref.status, 'data-created': ref.created_at, 'aria-labelledby': headingId,
    },
    el('div', { class: 'card-head' },
      el('h3', { id: headingId }, ref.patient.display_name, el('span', { class: 'muted' }, age)),
      R.statusBadge(ref)),
    el('dl', { class: 'facts' },
      fact('Motif', ref.reason),
      fact('Urgence', ref.urgency),
      fact('Arrivée prévue', expected),
      fact('Rappel', callback),
      fact('Dossier', ref.case_id),
      fact('Tiers payant', tiersPayant(ref)),
      fact('Orientée', `${R.time(ref.created_at, tz)} par ${ref.created_by}`),
      fact('Note', ref.note)),
    actions,
    form);
  }

  function dismissIfSeen() {
    if (!list.querySelector('.card[data-status="pending"]')) dismissAlert();
  }

  function upsert(ref, isNew) {
    const known = referrals.get(ref.id);
    if (known && known.version > ref.version) return;
    referrals.set(ref.id, ref);
    const old = list.querySelector(`li[data-id="${CSS.escape(ref.id)}"]`);
    // Keyboard users keep their place when a card is redrawn or leaves the list.
    const focused = old && old.contains(document.activeElement)
      ? (document.activeElement.dataset.action || 'card') : null;
    if (!ACTIVE.includes(ref.status)) {
      if (old) old.remove();
      if (focused) document.getElementById('incoming-title').focus();
    } else {
      const keepNew = isNew || (old && old.classList.contains('is-new') && ref.status === 'pending');
      const node = card(ref, keepNew);
      if (old) {
        const wasOpen = old.querySelector('.outcome-form:not([hidden])');
        old.replaceWith(node);
        if (wasOpen && node.querySelector('.outcome-form')) node.querySelector('.outcome-form').hidden = false;
        if (focused) (node.querySelector(`[data-action="${focused}"]`) || node.querySelector("[data-action]") || node).focus();
      } else {
        const after = Array.from(list.children).find((li) => li.dataset.created < ref.created_at);
        list.insertBefore(node, after || null);
      }
    }
    empty.hidden = list.children.length > 0;
  }

  function onReferral(data) {
    const ref = data.referral;
    if (ref.mmg !== mmg) return;
    const isNew = data.event === 'created' && !referrals.has(ref.id);
    upsert(ref, isNew);
    if (isNew) {
      unseen += 1;
      updateTitle();
      const when = ref.expected_at ? `, arrivée prévue à ${R.time(ref.expected_at, tz)}` : '';
      const urgency = ref.urgency ? ` (${ref.urgency})` : '';
      raiseAlert(R.sentence(`Nouvelle orientation régulée : ${ref.patient.display_name}${urgency}${when}`));
    } else if (data.event === 'cancelled') {
      raiseAlert(`Orientation annulée par la régulation : ${ref.patient.display_name} (dossier ${ref.case_id}).`);
    }
    refreshCounters();
  }

  async function resync() {
    const res = await R.api('GET', `/api/v1/referrals?mmg=${encodeURIComponent(mmg)}&status=pending,acknowledged,arrived&limit=200`);
    if (!res.ok) return;
    const current = new Set((res.data.referrals || []).map((r) => r.id));
    list.querySelectorAll('li[data-id]').forEach((li) => {
      if (!current.has(li.dataset.id)) li.remove();
    });
    (res.data.referrals || []).forEach((ref) => upsert(ref, false));
    empty.hidden = list.children.length > 0;
    refreshCounters();
  }

  /* ------------------------------------------------------------ counters */
  let counterTimer = null;
  function refreshCounters() {
    clearTimeout(counterTimer);
    counterTimer = setTimeout(async () => {
      const res = await R.api('GET', `/console/desk/${encodeURIComponent(mmg)}/summary.json`);
      if (!res.ok) return;
      for (const [key, value] of Object.entries(res.data)) {
        const node = document.querySelector(`[data-counter="${CSS.escape(key)}"]`);
        if (node && node.textContent !== String(value)) node.textContent = String(value);
      }
    }, 150);
  }

  /* Tiers payant in plain words with its reason (the server's tiers_payant_rule). */
  function tiersPayant(item) {
    const word = item.tiers_payant ? 'oui' : 'non';
    return item.tiers_payant_reason ? `${word} (${item.tiers_payant_reason})` : word;
  }

  /* ------------------------------------------------------------- visits */
  const visitForm = document.getElementById('visit-form');
  const visitStatus = document.getElementById('visit-form-status');
  let visitKey = R.newKey();
  visitForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (name) => String(visitForm.elements[name].value || '').trim();
    const body = { mmg, channel: value('channel') };
    if (value('case_id')) body.case_id = value('case_id');
    if (value('tiers_payant')) body.tiers_payant = value('tiers_payant') === 'true';
    if (value('outcome')) body.outcome = value('outcome');
    if (value('acts') !== '') body.acts = /^\d+$/.test(value('acts')) ? Number(value('acts')) : value('acts');
    if (value('age_band')) body.age_band = value('age_band');
    if (value('reason')) body.reason = value('reason');
    const button = visitForm.querySelector('button[type="submit"]');
    R.clearErrors(visitForm);
    R.say(visitStatus, '');
    button.disabled = true;
    const res = await R.api('POST', '/api/v1/visits', body, visitKey);
    button.disabled = false;
    if (res.ok) {
      visitForm.reset();
      visitKey = R.newKey();
      R.say(visitStatus, `Passage enregistré — tiers payant : ${tiersPayant(res.data)}.`);
      refreshCounters();
      visitForm.elements.channel.focus();
    } else if (res.status === 422) {
      R.showErrors(visitForm, res.data.errors);
    } else {
      R.showErrors(visitForm, [], res.data.message || `Enregistrement impossible (erreur ${res.status}).`);
    }
  });

  /* ---------------------------------------- calls put through to the desk */
  const callList = document.getElementById('desk-calls');
  const callsEmpty = document.getElementById('desk-calls-empty');
  const MAX_CALL_CARDS = 10;
  /* The heading of each ground, worded by the server (the protocol's overflow delay). */
  const GROUNDS = {};
  document.getElementById('ground-labels').content.querySelectorAll('[data-ground]')
    .forEach((node) => { GROUNDS[node.dataset.ground] = node.textContent; });
  const advice = document.getElementById('overflow-advice');
  const ELSEWHERE = {
    regulation: "L'accueil n'a pas décroché : appel renvoyé vers la régulation (centre 15).",
    pharmacy: 'Appel orienté ensuite vers la pharmacie de garde.',
    closed: "L'appelant a été invité à raccrocher et à composer le 15.",
  };
  let callCards = 0;

  function callsChanged() {
    callsEmpty.hidden = callList.children.length > 0;
  }

  /* A call's decision (the `call` event; the caller's number is never shown here).
   * Only calls of this MMG rung at the desk make a card; a later decision for the same
   * call (the desk did not answer) is noted on its card. */
  function onCall(c) {
    if (c.mmg !== mmg) return;
    const old = callList.querySelector(`li[data-call="${CSS.escape(c.call_id)}"]`);
    if (c.route !== 'direct_access') {
      if (old && old.dataset.route !== c.route) {
        old.dataset.route = c.route;
        const note = old.querySelector('.call-note');
        note.textContent = ELSEWHERE[c.route] || 'Appel orienté ailleurs ensuite.';
        note.hidden = false;
      }
      return;
    }
    if (old) return;  // the same decision told again
    callCards += 1;
    const headingId = `call-h-${callCards}`;
    const ground = c.ground || '';
    const card = el('li', {
      class: 'card is-new', tabindex: '-1', 'data-call': c.call_id, 'data-route': c.route,
      'data-ground': ground, 'aria-labelledby': headingId,
    },
    el('div', { class: 'card-head' },
      el('h3', { id: headingId }, GROUNDS[ground] || GROUNDS['']),
      el('span', { class: 'muted' }, `appel reçu à ${R.time(c.at, tz)}`)),
    ground === 'regulation_overflow' ? advice.content.cloneNode(true) : null,
    el('p', { class: 'call-note muted', hidden: true }),
    el('div', { class: 'actions' },
      el('button', {
        type: 'button', class: 'secondary small', 'aria-describedby': headingId,
        onclick: () => {
          card.remove();
          callsChanged();
          document.getElementById('desk-calls-title').focus();
        },
      }, 'Vu, retirer')));
    callList.prepend(card);
    while (callList.children.length > MAX_CALL_CARDS) callList.lastElementChild.remove();
    callsChanged();
  }

  /* -------------------------------------------------------------- live */
  R.live(`/api/v1/events?mmg=${encodeURIComponent(mmg)}`, {
    call: onCall,
    referral: onReferral,
    visit: refreshCounters,
  }, resync);
  R.every(60000, () => {
    R.refreshState();
    refreshCounters();
  });
})();
