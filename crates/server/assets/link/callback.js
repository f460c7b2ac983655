// linkvault Link: the OAuth callback page (shown in the sign-in popup). It removes the authorization code
// from the address bar, tells the Link page that opened the popup (same origin only), and closes itself.
(function () {
  'use strict';
  try { history.replaceState(null, '', location.pathname); } catch (e) { /* ignore */ }
  var status = document.body.getAttribute('data-status') === 'ok' ? 'ok' : 'failed';
  var opener = window.opener;
  if (opener && !opener.closed) {
    try { opener.postMessage({ type: 'linkvault:oauthComplete', status: status }, location.origin); } catch (e) { /* ignore */ }
    setTimeout(function () { window.close(); }, 400);
  }
})();
