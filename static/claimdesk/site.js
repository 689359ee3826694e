// The claimant's pages. Served from this site: the CSP allows no inline script.
document.addEventListener('DOMContentLoaded', function () {
  // The language selector changes the page's language at once (its button shows without JavaScript).
  document.querySelectorAll('[data-submit-on-change]').forEach(function (select) {
    select.addEventListener('change', function () { select.form.submit(); });
  });

  // The claim form shows the fields that fit the chosen kind; without JavaScript every field stays visible.
  var kinds = document.querySelectorAll('input[name="kind"]');
  function update() {
    var chosen = document.querySelector('input[name="kind"]:checked');
    document.querySelectorAll('.reference').forEach(function (div) {
      div.hidden = chosen ? div.dataset.kinds.split(' ').indexOf(chosen.value) < 0 : false;
    });
  }
  kinds.forEach(function (radio) { radio.addEventListener('change', update); });
  if (kinds.length) update();
  var summary = document.getElementById('error-summary');
  if (summary) summary.focus();
});
