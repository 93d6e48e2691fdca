/* Reports page: a coordinator enters the figures that come from elsewhere (ED passages
 * of the month, the year's costs) through PUT /api/v1/figures/…; the page then reloads
 * so the report shows them. Validation errors come back in French next to their fields. */
(function () {
  'use strict';
  const R = window.Regulator;

  for (const form of document.querySelectorAll('form[data-figures]')) {
    const status = form.querySelector('.form-status');
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = {};
      for (const input of form.querySelectorAll('[data-field]')) {
        const raw = String(input.value || '').trim();
        if (raw === '') continue;
        if (input.type === 'number') {
          const number = Number(raw.replace(',', '.'));
          body[input.name] = Number.isFinite(number) ? number : raw;
        } else {
          body[input.name] = raw;
        }
      }
      const button = form.querySelector('button[type="submit"]');
      R.clearErrors(form);
      R.say(status, '');
      button.disabled = true;
      const res = await R.api('PUT', form.dataset.figures, body);
      button.disabled = false;
      if (res.ok) {
        R.say(status, 'Données enregistrées.');
        window.location.reload();
      } else if (res.status === 422) {
        R.showErrors(form, res.data.errors);
      } else {
        R.showErrors(form, [], res.data.message || `Enregistrement impossible (erreur ${res.status}).`);
      }
    });
  }
})();
