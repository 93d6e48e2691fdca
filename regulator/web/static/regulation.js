/* Regulation console: live calls to regulation and overflows, MMG states, the
 * regulation line's figures of the day (pushed live), referral form (French field
 * errors from the API's 422; P0/P1 confirmed before sending), live referral list. */
(function () {
  'use strict';
  const R = window.Regulator;
  const { el } = R;

  const mmgs = {};
  document.querySelectorAll('#mmgs tr[data-mmg]').forEach((tr) => {
    mmgs[tr.dataset.mmg] = { tz: tr.dataset.tz, name: tr.dataset.name };
  });
  const tzOf = (mmg) => (mmgs[mmg] ? mmgs[mmg].tz : undefined);
  const nameOf = (mmg) => (mmgs[mmg] ? mmgs[mmg].name : mmg);

  /* ------------------------------------------------------------ referrals */
  const referrals = new Map();
  const refBody = document.getElementById('referrals-body');
  const refEmpty = document.getElementById('referrals-empty');
  const listStatus = document.getElementById('referral-form-status');

  function referralRow(ref) {
    const tz = tzOf(ref.mmg);
    const patient = ref.patient.display_name + (ref.patient.age_band ? ` (${ref.patient.age_band} ans)` : '');
    const actions = el('td', {});
    if (ref.status === 'pending' || ref.status === 'acknowledged') {
      actions.append(el('button', {
        type: 'button',
        class: 'danger small',
        'aria-label': `Annuler l'orientation de ${ref.patient.display_name} (dossier ${ref.case_id})`,
        onclick: () => cancel(ref),
      }, 'Annuler'));
    }
    return el('tr', {
      'data-id': ref.id, 'data-case': ref.case_id, 'data-status': ref.status, 'data-created': ref.created_at,
    },
    el('td', {}, R.time(ref.created_at, tz)),
    el('td', {}, nameOf(ref.mmg)),
    el('td', {}, ref.case_id),
    el('td', {}, patient),
    el('td', {}, ref.reason || '—'),
    el('td', {}, ref.urgency || '—'),
    el('td', {}, ref.expected_at ? R.time(ref.expected_at, tz) : '—'),
    el('td', {}, R.statusBadge(ref)),
    actions);
  }

  function upsertReferral(ref) {
    const known = referrals.get(ref.id);
    if (known && known.version > ref.version) return;  // an older event arriving late
    referrals.set(ref.id, ref);
    const row = referralRow(ref);
    const old = refBody.querySelector(`tr[data-id="${CSS.escape(ref.id)}"]`);
    if (old) {
      old.replaceWith(row);
      if (known && known.status !== ref.status) row.classList.add('flash');
    } else {
      const after = Array.from(refBody.children).find((tr) => tr.dataset.created < ref.created_at);
      refBody.insertBefore(row, after || null);
      if (known === undefined && refBody.children.length > 200) refBody.lastElementChild.remove();
    }
    refEmpty.hidden = refBody.children.length > 0;
  }

  async function loadReferrals() {
    const res = await R.api('GET', '/api/v1/referrals?limit=100');
    if (res.ok) (res.data.referrals || []).slice().reverse().forEach(upsertReferral);
  }

  async function cancel(ref) {
    if (!window.confirm(`Annuler l'orientation de ${ref.patient.display_name} vers ${nameOf(ref.mmg)} ?`)) return;
    const res = await R.api('POST', `/api/v1/referrals/${encodeURIComponent(ref.id)}/cancel`, {}, R.newKey());
    if (res.ok) {
      upsertReferral(res.data);
      R.say(listStatus, `Orientation de ${ref.patient.display_name} annulée.`);
    } else {
      R.say(listStatus, res.data.message || `Annulation impossible (erreur ${res.status}).`, true);
    }
  }

  /* ---------------------------------------------------------------- calls */
  const calls = new Map();
  const callsBody = document.getElementById('calls-body');
  const callsEmpty = document.getElementById('calls-empty');

  const isOverflow = (c) => c.ground === 'regulation_overflow';
  const shown = (c) => c.route === 'regulation' || isOverflow(c);

  function callLabel(c) {
    if (isOverflow(c)) return el('span', { class: 'route-overflow' }, "Débordement : passé à l'accueil de la MMG");
    const label = el('span', {}, 'Régulation (centre 15)');
    if (c.failsafe) label.append(el('span', { class: 'tag' }, 'secours'));
    return label;
  }

  function onCall(c) {
    const known = calls.get(c.call_id);
    if (!shown(c) && !known) return;
    calls.set(c.call_id, c);
    const row = el('tr', { 'data-call': c.call_id, 'data-route': c.route },
      el('td', {}, R.time(c.at, tzOf(c.mmg))),
      el('td', {}, nameOf(c.mmg)),
      el('td', {}, c.caller),
      el('td', {}, shown(c) ? callLabel(c) : 'Autre orientation'));
    const old = callsBody.querySelector(`tr[data-call="${CSS.escape(c.call_id)}"]`);
    if (old) old.replaceWith(row);
    else callsBody.prepend(row);
    while (callsBody.children.length > 50) callsBody.lastElementChild.remove();
    callsEmpty.hidden = callsBody.children.length > 0;
    recount();
  }

  function recount() {
    const counts = {};
    for (const c of calls.values()) {
      counts[c.mmg] = counts[c.mmg] || { regulation: 0, overflow: 0 };
      if (isOverflow(c)) counts[c.mmg].overflow += 1;
      else if (c.route === 'regulation') counts[c.mmg].regulation += 1;
    }
    document.querySelectorAll('#mmgs [data-count]').forEach((cell) => {
      const n = counts[cell.dataset.mmg] || { regulation: 0, overflow: 0 };
      cell.textContent = String(n[cell.dataset.count]);
    });
  }

  /* ------------------------------------- the regulation line's figures today */
  /* Written as the server words them (`display`): one formatter, on the server. */
  function showQuality(q) {
    if (!q || !q.display) return;
    const row = document.querySelector(`#quality tr[data-mmg="${CSS.escape(q.mmg)}"]`);
    if (!row) return;
    row.dataset.day = q.day;
    for (const [key, text] of Object.entries(q.display)) {
      const cell = row.querySelector(`[data-quality="${CSS.escape(key)}"]`);
      if (cell && cell.textContent !== text) {
        cell.textContent = text;
        cell.classList.remove('flash');
        void cell.offsetWidth;  // restart the highlight
        cell.classList.add('flash');
      }
    }
  }

  async function loadQuality() {
    const res = await R.api('GET', '/console/regulation/quality.json');
    if (res.ok) (res.data.mmgs || []).forEach(showQuality);
  }

  /* ------------------------------------------------------------ the form */
  const form = document.getElementById('referral-form');
  let draftKey = R.newKey();  // same key on a retry of the same draft: no duplicate
  /* Degrees of urgency sent only once confirmed (the server refuses them otherwise). */
  const CONFIRMED = (form.dataset.confirmUrgencies || '').split(' ').filter(Boolean);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    const value = (name) => String(form.elements[name].value || '').trim();
    const select = form.elements.mmg;
    const option = select.selectedOptions[0];
    const body = {
      mmg: value('mmg'),
      case_id: value('case_id'),
      patient: { display_name: value('display_name') },
      tiers_payant: form.elements.tiers_payant.checked,
      note: value('note'),
    };
    if (value('age_band')) body.patient.age_band = value('age_band');
    if (value('callback_number')) body.callback_number = value('callback_number');
    if (value('reason')) body.reason = value('reason');
    if (value('urgency')) body.urgency = value('urgency');
    if (value('expected_at')) {
      body.expected_at = R.zonedToIso(value('expected_at'), option ? option.dataset.tz : undefined) || value('expected_at');
    }
    R.clearErrors(form);
    R.say(listStatus, '');
    if (CONFIRMED.includes(body.urgency)) {
      const who = body.patient.display_name || 'ce patient';
      const question = `Urgence ${body.urgency} : une maison médicale de garde n'est pas un service d'urgences.\n\n`
        + `Confirmez-vous l'envoi de ${who} vers ${option ? option.textContent : body.mmg} ?`;
      if (!window.confirm(question)) {
        R.say(listStatus, `Orientation non envoyée : urgence ${body.urgency} non confirmée`);
        form.elements.urgency.focus();
        return;
      }
      body.confirm_urgency = true;
    }
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    const res = await R.api('POST', '/console/regulation/referrals', body, draftKey);
    button.disabled = false;
    button.removeAttribute('aria-busy');
    if (res.ok) {
      upsertReferral(res.data);
      const keep = select.value;
      form.reset();
      select.value = keep;
      draftKey = R.newKey();
      R.say(listStatus, `Orientation envoyée à ${nameOf(res.data.mmg)} : ${res.data.patient.display_name} (dossier ${res.data.case_id}).`);
      form.elements.case_id.focus();
    } else if (res.status === 422) {
      R.showErrors(form, res.data.errors);
      if (res.data.confirm_required) R.say(listStatus, res.data.message, true);
    } else {
      R.showErrors(form, [], res.data.message || `Envoi impossible (erreur ${res.status}).`);
    }
  });

  /* -------------------------------------------------------------- live */
  R.live('/api/v1/events', {
    call: onCall,
    referral: (data) => upsertReferral(data.referral),
    quality: (data) => showQuality(data.quality),
  }, () => {
    loadReferrals();
    loadQuality();
  });
  R.every(60000, () => {
    R.refreshState();
    loadQuality();  // the day turns at 0 h; another replica's legs reach us this way
  });
})();
