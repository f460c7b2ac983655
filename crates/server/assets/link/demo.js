// The sandbox demo app: gets a link token from its backend route, opens Link with linkvault's browser client,
// shows the payload, keeps tokenIds in localStorage per end user (and scope: a deposit's write-scoped tokenId is
// not a read one), and reopens Link as a return user. The deposit button runs Link's transfer flow and shows
// onTransferFinished's payload.
(function () {
  'use strict';
  var userInput = document.getElementById('demo-user');
  var tokensList = document.getElementById('demo-tokens');
  var payloadEl = document.getElementById('demo-payload');
  var eventsEl = document.getElementById('demo-events');
  var modeEl = document.getElementById('demo-mode');
  var transferEl = document.getElementById('demo-transfer');

  userInput.value = localStorage.getItem('linkvault-demo-user') || 'demo-user';

  function key() { return 'linkvault-demo-tokens:' + userInput.value.trim(); }
  function saved() { try { return JSON.parse(localStorage.getItem(key()) || '[]'); } catch (e) { return []; } }
  function save(list) { localStorage.setItem(key(), JSON.stringify(list)); }

  function show() {
    var list = saved();
    tokensList.replaceChildren.apply(tokensList, list.map(function (t) {
      var li = document.createElement('li');
      li.textContent = t.brokerType + ' (' + (t.scope || 'read') + '): ' + t.tokenId;
      li.setAttribute('data-scope', t.scope || 'read');
      li.setAttribute('data-token-id', t.tokenId);
      return li;
    }));
    modeEl.textContent = list.length
      ? 'Return user: Link opens with these ' + list.length + ' tokenId(s) (those of the scope asked for) as accessTokens and skips sign-in.'
      : 'New user: Link opens on the catalog.';
  }

  function logEvent(text) {
    var li = document.createElement('li');
    li.textContent = new Date().toLocaleTimeString() + ' ' + text;
    eventsEl.insertBefore(li, eventsEl.firstChild);
  }

  userInput.addEventListener('input', show);
  document.getElementById('demo-forget').addEventListener('click', function () { localStorage.removeItem(key()); show(); });

  function openLink(deposit) {
    var userId = userInput.value.trim();
    if (!userId) { userInput.focus(); return; }
    localStorage.setItem('linkvault-demo-user', userId);
    var scope = deposit ? 'write' : 'read';
    var body = deposit ? { userId: userId, deposit: true } : { userId: userId, restrictMultipleAccounts: false };
    fetch('/demo/api/linktoken', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      .then(function (r) { return r.json(); })
      .then(function (json) {
        if (json.status !== 'ok') { logEvent('link token error: ' + json.message); return; }
        // Only this scope's tokenIds: Link would ignore the others anyway.
        var accessTokens = saved().filter(function (t) { return (t.scope || 'read') === scope; }).map(function (t) {
          return { accessToken: t.tokenId, brokerType: t.brokerType, brokerName: '', accountId: '', accountName: '' };
        });
        var link = window.LinkvaultLink.createLink({
          theme: 'system',
          language: 'system',
          accessTokens: accessTokens.length ? accessTokens : undefined,
          onIntegrationConnected: function (payload) {
            payloadEl.textContent = JSON.stringify(payload, null, 2);
            var p = payload.accessToken;
            if (!p || !p.accountTokens || !p.accountTokens.length) return;
            var tokenId = p.accountTokens[0].tokenId;
            var list = saved().filter(function (t) { return !(t.brokerType === p.brokerType && (t.scope || 'read') === scope); });
            list.push({ tokenId: tokenId, brokerType: p.brokerType, scope: scope });
            save(list);
            show();
          },
          onTransferFinished: function (payload) {
            transferEl.textContent = JSON.stringify(payload, null, 2);
            logEvent('transfer finished: ' + payload.amount + ' ' + payload.symbol + ' (' + (payload.txHash || payload.txId) + ')');
          },
          onExit: function (error, summary) { logEvent('exit' + (error ? ' with error: ' + error : '') + (summary ? ' (' + summary.page + ')' : '')); },
          onEvent: function (ev) { logEvent(ev.type); }
        });
        link.openLink(json.content.linkToken);
      }, function (err) { logEvent('network error: ' + err); });
  }

  document.getElementById('demo-form').addEventListener('submit', function (e) { e.preventDefault(); openLink(false); });
  document.getElementById('demo-deposit').addEventListener('click', function () { openLink(true); });

  show();
})();
