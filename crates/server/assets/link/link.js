// linkvault Link page. Speaks Mesh's web-link-sdk postMessage protocol with its parent window:
//   posts `loaded`, `brokerageAccountAccessToken`, the Link event types and `close`/`done` (SessionSummary),
//   only ever to the parent's origin; accepts `meshSDKSpecs`, `frontAccessTokens` and `closeRequested` only
//   from the parent window and origin. Everything else is ignored.
// The auth_code in the address bar is exchanged once for a session token that stays in this closure's memory
// and travels in an Authorization header; the auth_code is removed from the address bar at once.
(function () {
  'use strict';

  var query = new URLSearchParams(location.search);
  var authCode = query.get('auth_code') || '';
  var language = (query.get('lng') || 'en').toLowerCase();
  var theme = (query.get('th') || 'system').toLowerCase();
  var embedded = query.get('rt') === 'embedded';
  try { history.replaceState(null, '', location.pathname); } catch (e) { /* ignore */ }

  var root = document.documentElement;
  if (theme === 'dark') root.classList.add('lv-dark');
  if (theme === 'light') root.classList.add('lv-light');
  if (embedded) root.classList.add('lv-embedded');

  // ---------------------------------------------------------------------------------------------- i18n
  var STRINGS = {
    en: {
      connectTitle: 'Connect an account', search: 'Search', searchLabel: 'Search integrations',
      noResults: 'No integration matches your search.', connected: 'Connected', reauth: 'Sign in again',
      signInTo: 'Sign in to {name}', username: 'Username', password: 'Password', signIn: 'Sign in',
      apiKey: 'API key', apiSecret: 'API secret',
      working: 'Please wait…', mfaTitle: 'Verification', mfaPrompt: 'Enter the code from your authenticator app.',
      mfaCode: 'Verification code', verify: 'Verify', oauthPrompt: 'You will sign in to {name} in a new window.',
      continueTo: 'Continue to {name}', waiting: 'Waiting for you to finish signing in to {name}…',
      cancel: 'Cancel', connectedTo: 'Connected to {name}', accounts: 'Accounts', done: 'Done',
      linkAnother: 'Link another account', close: 'Close', back: 'Back', errorTitle: 'Something went wrong',
      reauthNotice: 'Your {name} session has ended. Sign in again to keep this connection.',
      popupBlocked: 'The sign-in window was blocked. Allow pop-ups for this site and try again.',
      windowClosed: 'The sign-in window was closed before the sign-in finished.', loading: 'Loading…',
      secured: 'Secured by linkvault', genericError: 'Something went wrong. Please try again.',
      returning: 'Welcome back', accountId: 'Account ID'
    },
    fr: {
      connectTitle: 'Connecter un compte', search: 'Rechercher', searchLabel: 'Rechercher une intégration',
      noResults: 'Aucune intégration ne correspond.', connected: 'Connecté', reauth: 'Se reconnecter',
      signInTo: 'Connexion à {name}', username: "Nom d'utilisateur", password: 'Mot de passe', signIn: 'Se connecter',
      working: 'Veuillez patienter…', mfaTitle: 'Vérification', mfaPrompt: "Saisissez le code de votre application d'authentification.",
      mfaCode: 'Code de vérification', verify: 'Vérifier', oauthPrompt: 'Vous vous connecterez à {name} dans une nouvelle fenêtre.',
      continueTo: 'Continuer vers {name}', waiting: 'En attente de votre connexion à {name}…',
      cancel: 'Annuler', connectedTo: 'Connecté à {name}', accounts: 'Comptes', done: 'Terminé',
      linkAnother: 'Connecter un autre compte', close: 'Fermer', back: 'Retour', errorTitle: 'Une erreur est survenue',
      reauthNotice: 'Votre session {name} a expiré. Reconnectez-vous pour conserver cette connexion.',
      popupBlocked: 'La fenêtre de connexion a été bloquée. Autorisez les fenêtres pop-up et réessayez.',
      windowClosed: 'La fenêtre de connexion a été fermée avant la fin.', loading: 'Chargement…',
      secured: 'Sécurisé par linkvault', genericError: 'Une erreur est survenue. Veuillez réessayer.',
      returning: 'Bon retour', accountId: 'Identifiant du compte'
    },
    es: {
      connectTitle: 'Conectar una cuenta', search: 'Buscar', searchLabel: 'Buscar integraciones',
      noResults: 'Ninguna integración coincide.', connected: 'Conectada', reauth: 'Iniciar sesión de nuevo',
      signInTo: 'Iniciar sesión en {name}', username: 'Usuario', password: 'Contraseña', signIn: 'Iniciar sesión',
      working: 'Espere…', mfaTitle: 'Verificación', mfaPrompt: 'Introduzca el código de su aplicación de autenticación.',
      mfaCode: 'Código de verificación', verify: 'Verificar', oauthPrompt: 'Iniciará sesión en {name} en una ventana nueva.',
      continueTo: 'Continuar a {name}', waiting: 'Esperando a que termine de iniciar sesión en {name}…',
      cancel: 'Cancelar', connectedTo: 'Conectada a {name}', accounts: 'Cuentas', done: 'Listo',
      linkAnother: 'Conectar otra cuenta', close: 'Cerrar', back: 'Atrás', errorTitle: 'Algo salió mal',
      reauthNotice: 'Su sesión de {name} terminó. Inicie sesión de nuevo para mantener esta conexión.',
      popupBlocked: 'Se bloqueó la ventana de inicio de sesión. Permita ventanas emergentes e inténtelo de nuevo.',
      windowClosed: 'La ventana se cerró antes de terminar.', loading: 'Cargando…',
      secured: 'Protegido por linkvault', genericError: 'Algo salió mal. Inténtelo de nuevo.',
      returning: 'Bienvenido de nuevo', accountId: 'ID de cuenta'
    }
  };
  var lang = STRINGS[language] ? language : (STRINGS[language.split('-')[0]] ? language.split('-')[0] : 'en');
  root.lang = lang;
  function t(key, vars) {
    var text = (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.en[key] || key;
    if (vars) Object.keys(vars).forEach(function (k) { text = text.split('{' + k + '}').join(vars[k]); });
    return text;
  }

  // ------------------------------------------------------------------------------------- DOM helpers
  var main = document.getElementById('lv-main');
  var titleEl = document.getElementById('lv-title');
  var backButton = document.getElementById('lv-back');
  var closeButton = document.getElementById('lv-close');
  document.getElementById('lv-footer-text').textContent = t('secured');
  closeButton.setAttribute('aria-label', t('close'));
  backButton.setAttribute('aria-label', t('back'));

  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') el.textContent = v;
      else if (k === 'onclick') el.addEventListener('click', v);
      else if (k === 'onsubmit') el.addEventListener('submit', v);
      else if (k === 'oninput') el.addEventListener('input', v);
      else if (k === 'className') el.className = v;
      else el.setAttribute(k, v === true ? '' : v);
    });
    (children || []).forEach(function (c) { if (c) el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return el;
  }

  function render(title, nodes, options) {
    options = options || {};
    titleEl.textContent = title;
    document.title = title;
    backButton.hidden = !options.back;
    main.replaceChildren.apply(main, nodes);
    var focus = options.focus || main.querySelector('input, button');
    if (focus) focus.focus(); else main.focus();
  }

  function logo(integration, large) {
    var box = h('div', { className: 'lv-logo' + (large ? ' lv-logo-large' : ''), 'aria-hidden': 'true', text: (integration.name || '?').charAt(0).toUpperCase() });
    var src = integration.logoBase64 ? 'data:image/png;base64,' + integration.logoBase64 : integration.logoUrl;
    if (src && /^(https:|data:image\/)/.test(src)) {
      var img = h('img', { alt: '', src: src });
      img.addEventListener('error', function () { img.remove(); });
      box.appendChild(img);
    }
    return box;
  }

  // ------------------------------------------------------------------------------------ the protocol
  var inFrame = window.parent !== window;
  var parentOrigin = null;
  if (inFrame) {
    if (location.ancestorOrigins && location.ancestorOrigins.length > 0) parentOrigin = location.ancestorOrigins[0];
    else if (document.referrer) { try { parentOrigin = new URL(document.referrer).origin; } catch (e) { /* ignore */ } }
    if (parentOrigin === 'null') parentOrigin = null;
  }

  function post(type, payload) {
    if (!inFrame || !parentOrigin) return;
    var message = payload === undefined ? { type: type } : { type: type, payload: payload };
    window.parent.postMessage(message, parentOrigin);
  }

  var S = {
    token: null, integrations: [], byType: {}, connections: {}, fixedType: null, restrict: true,
    page: 'loadingPage', selected: null, emitted: {}, oauth: null, started: false,
    sdkSpecs: null, accessTokens: null, tokensSettled: !inFrame
  };

  function summary(page, errorMessage) {
    var s = { page: page || S.page };
    if (S.selected) {
      s.selectedIntegration = { id: S.selected.id, name: S.selected.name, integrationType: S.selected.type, integrationName: S.selected.name };
    }
    if (errorMessage) s.errorMessage = errorMessage;
    return s;
  }

  function closeLink(kind, errorMessage) {
    stopOAuth();
    post(kind || 'close', summary(S.page, errorMessage));
    if (!inFrame) {
      render(t('connectTitle'), [h('p', { className: 'lv-muted', text: t('close') })]);
      try { window.close(); } catch (e) { /* ignore */ }
    }
  }

  window.addEventListener('message', function (event) {
    var data = event.data;
    if (!data || typeof data !== 'object' || typeof data.type !== 'string') return;
    if (inFrame && event.source === window.parent) {
      if (!parentOrigin) parentOrigin = event.origin; // fallback when the browser did not tell us (no ancestorOrigins/referrer)
      if (event.origin !== parentOrigin) return;
      if (data.type === 'meshSDKSpecs') {
        S.sdkSpecs = data.payload || {};
        setTimeout(settleTokens, 300);
      } else if (data.type === 'frontAccessTokens') {
        S.accessTokens = Array.isArray(data.payload) ? data.payload.slice(0, 32) : [];
        settleTokens();
      } else if (data.type === 'closeRequested') {
        closeLink('close');
      }
      return;
    }
    if (S.oauth && event.source === S.oauth.popup && event.origin === location.origin && data.type === 'linkvault:oauthComplete') {
      pollOAuth();
    }
  });

  function settleTokens() {
    if (S.tokensSettled) return;
    S.tokensSettled = true;
    proceed();
  }

  // --------------------------------------------------------------------------------------- the API
  function api(path, body) {
    var headers = { 'content-type': 'application/json' };
    if (S.token) headers.authorization = 'Bearer ' + S.token;
    return fetch(path, {
      method: 'POST', headers: headers, body: JSON.stringify(body || {}),
      credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer'
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        if (!response.ok || json.status !== 'ok') {
          var error = new Error(json.displayMessage || json.message || t('genericError'));
          error.errorType = json.errorType || '';
          throw error;
        }
        return json.content;
      });
    });
  }

  // ------------------------------------------------------------------------------------------ views
  function showError(message, page) {
    stopOAuth();
    S.page = page || 'errorPage';
    render(t('errorTitle'), [
      h('div', { className: 'lv-big-icon', 'aria-hidden': 'true', text: '⚠' }),
      h('p', { className: 'lv-error', role: 'alert', id: 'lv-error-message', text: message }),
      h('button', { type: 'button', className: 'lv-primary', id: 'lv-error-close', text: t('close'), onclick: function () { closeLink('close', message); } })
    ]);
  }

  function showCatalog() {
    S.page = 'catalogPage';
    S.selected = null;
    var search = h('input', { type: 'search', className: 'lv-search', id: 'lv-search', placeholder: t('search'), 'aria-label': t('searchLabel'), autocomplete: 'off' });
    var list = h('ul', { className: 'lv-list', id: 'lv-catalog', role: 'list' });
    var empty = h('p', { className: 'lv-muted', text: t('noResults'), hidden: true });
    function fill() {
      var q = search.value.trim().toLowerCase();
      var shown = S.integrations.filter(function (i) { return !q || i.name.toLowerCase().indexOf(q) >= 0 || i.type.toLowerCase().indexOf(q) >= 0; });
      list.replaceChildren.apply(list, shown.map(function (i) {
        var c = S.connections[i.type];
        var badge = c ? h('span', { className: 'lv-badge' + (c.status === 'active' ? '' : ' lv-warn'), text: c.status === 'active' ? t('connected') : t('reauth') }) : null;
        return h('li', {}, [h('button', {
          type: 'button', className: 'lv-item', 'data-type': i.type,
          onclick: function () {
            post('integrationSelected', { integrationType: i.type, integrationName: i.name, userSearched: q.length > 0 });
            openIntegration(i.type, true);
          }
        }, [logo(i), h('span', { className: 'lv-item-name', text: i.name }), badge])]);
      }));
      empty.hidden = shown.length > 0;
    }
    search.addEventListener('input', fill);
    list.addEventListener('keydown', function (e) {
      if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
      var items = Array.prototype.slice.call(list.querySelectorAll('button'));
      var at = items.indexOf(document.activeElement);
      var next = items[at + (e.key === 'ArrowDown' ? 1 : -1)];
      if (next) { next.focus(); e.preventDefault(); }
    });
    search.addEventListener('keydown', function (e) {
      if (e.key === 'ArrowDown') { var first = list.querySelector('button'); if (first) { first.focus(); e.preventDefault(); } }
    });
    fill();
    render(t('connectTitle'), [search, list, empty], { focus: search });
    post('homePageLoaded');
  }

  function openIntegration(type, fromCatalog) {
    var integration = S.byType[type];
    if (!integration) { showCatalog(); return; }
    S.selected = integration;
    var c = S.connections[type];
    if (c && c.status === 'active') showConnected(type, true);
    else showSignIn(type, c && c.status === 'reauthRequired', fromCatalog);
  }

  function canGoBack() { return !S.fixedType; }

  function showSignIn(type, reauth, fromCatalog) {
    var integration = S.byType[type];
    S.selected = integration;
    S.page = integration.auth === 'oauth' ? 'oauthPage' : 'credentialsPage';
    var notice = reauth ? h('p', { className: 'lv-notice', role: 'status', id: 'lv-reauth', text: t('reauthNotice', { name: integration.name }) }) : null;
    if (integration.auth === 'oauth') {
      var errorBox = h('p', { className: 'lv-error', role: 'alert', hidden: true });
      var go = h('button', { type: 'button', className: 'lv-primary', id: 'lv-oauth-continue', text: t('continueTo', { name: integration.name }) });
      go.addEventListener('click', function () { startOAuth(integration, errorBox, go); });
      render(t('signInTo', { name: integration.name }), [
        logo(integration, true), notice,
        h('p', { className: 'lv-center lv-muted', text: t('oauthPrompt', { name: integration.name }) }),
        errorBox, go
      ], { back: canGoBack() || fromCatalog });
      return;
    }
    // API-key integrations take the key and its secret in the same two fields (sent as username/password).
    var apiKey = integration.auth === 'apiKey';
    var username = h('input', { id: 'lv-username', name: 'username', autocomplete: apiKey ? 'off' : 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
    var password = h('input', { id: 'lv-password', name: 'password', type: 'password', autocomplete: apiKey ? 'off' : 'current-password', required: true });
    var error = h('p', { className: 'lv-error', role: 'alert', id: 'lv-signin-error', hidden: true });
    var submit = h('button', { type: 'submit', className: 'lv-primary', id: 'lv-signin', text: t('signIn') });
    var form = h('form', { className: 'lv-form', novalidate: true }, [
      h('label', { for: 'lv-username' }, [t(apiKey ? 'apiKey' : 'username'), username]),
      h('label', { for: 'lv-password' }, [t(apiKey ? 'apiSecret' : 'password'), password]),
      error, submit
    ]);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      if (!username.value.trim() || !password.value) { (username.value.trim() ? password : username).focus(); return; }
      post('credentialsEntered');
      busy(submit, true);
      error.hidden = true;
      var creds = { type: type, username: username.value, password: password.value };
      api('/link/api/credentials', creds).then(function (answer) {
        busy(submit, false);
        handleCredentialsAnswer(integration, creds, answer, error);
      }, function (err) {
        busy(submit, false);
        failSignIn(integration, err.message, error, err.errorType);
      });
    });
    render(t('signInTo', { name: integration.name }), [logo(integration, true), notice, form], { back: canGoBack() || fromCatalog, focus: username });
  }

  function busy(button, on) {
    button.disabled = on;
    if (on) { button.dataset.label = button.textContent; button.textContent = t('working'); }
    else if (button.dataset.label) button.textContent = button.dataset.label;
  }

  function failSignIn(integration, message, errorEl, errorType) {
    post('integrationConnectionError', { errorMessage: message });
    if (errorType === 'linkTokenExpired') { showError(message); return; }
    errorEl.textContent = message;
    errorEl.hidden = false;
  }

  function handleCredentialsAnswer(integration, creds, answer, errorEl) {
    if (answer.status === 'succeeded') { creds.password = ''; connected(integration, answer); return; }
    if (answer.status === 'mfaRequired') {
      post('integrationMfaRequired');
      showMfa(integration, creds, answer.challengeId);
      return;
    }
    failSignIn(integration, answer.errorMessage || t('genericError'), errorEl);
  }

  function showMfa(integration, creds, challengeId) {
    S.page = 'mfaPage';
    var code = h('input', { id: 'lv-mfa', name: 'mfaCode', inputmode: 'numeric', autocomplete: 'one-time-code', required: true, maxlength: '12' });
    var error = h('p', { className: 'lv-error', role: 'alert', id: 'lv-mfa-error', hidden: true });
    var submit = h('button', { type: 'submit', className: 'lv-primary', id: 'lv-mfa-submit', text: t('verify') });
    var form = h('form', { className: 'lv-form', novalidate: true }, [
      h('p', { className: 'lv-muted', text: t('mfaPrompt') }),
      h('label', { for: 'lv-mfa' }, [t('mfaCode'), code]), error, submit
    ]);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      if (!code.value.trim()) { code.focus(); return; }
      post('integrationMfaEntered');
      busy(submit, true);
      error.hidden = true;
      var body = { type: creds.type, username: creds.username, password: creds.password, challengeId: challengeId, mfaCode: code.value.trim() };
      api('/link/api/credentials', body).then(function (answer) {
        busy(submit, false);
        if (answer.status === 'mfaRequired') { challengeId = answer.challengeId; failSignIn(integration, t('genericError'), error); return; }
        handleCredentialsAnswer(integration, creds, answer, error);
      }, function (err) {
        busy(submit, false);
        failSignIn(integration, err.message, error, err.errorType);
      });
    });
    render(t('mfaTitle'), [logo(integration, true), form], { focus: code });
  }

  // OAuth: the popup is opened synchronously in the click (so it is not blocked), then sent to the
  // integration's authorize URL. The callback page tells us; we also poll in case the opener link is lost.
  function startOAuth(integration, errorEl, button) {
    stopOAuth();
    var popup = window.open('', 'lv-oauth-' + Date.now(), 'popup,width=480,height=720');
    if (!popup) { failSignIn(integration, t('popupBlocked'), errorEl); return; }
    try { popup.opener = window; } catch (e) { /* ignore */ }
    busy(button, true);
    api('/link/api/oauth/start', { type: integration.type }).then(function (answer) {
      busy(button, false);
      popup.location.href = answer.authorizeUrl;
      post('integrationOAuthStarted', { integrationType: integration.type, integrationName: integration.name });
      S.oauth = { popup: popup, integration: integration, polls: 0, closedPolls: 0, timer: null };
      showWaiting(integration);
      S.oauth.timer = setInterval(pollOAuth, 1000);
    }, function (err) {
      busy(button, false);
      try { popup.close(); } catch (e) { /* ignore */ }
      failSignIn(integration, err.message, errorEl, err.errorType);
    });
  }

  function stopOAuth() {
    if (!S.oauth) return;
    clearInterval(S.oauth.timer);
    S.oauth = null;
  }

  function pollOAuth() {
    var o = S.oauth;
    if (!o || o.inFlight) return;
    o.polls += 1;
    if (o.polls > 900) { stopOAuth(); showSignInError(o.integration, t('windowClosed')); return; }
    o.inFlight = true;
    api('/link/api/oauth/result').then(function (answer) {
      o.inFlight = false;
      if (S.oauth !== o) return;
      if (answer.status === 'succeeded') { stopOAuth(); try { o.popup.close(); } catch (e) { /* ignore */ } connected(o.integration, answer); return; }
      if (answer.status === 'failed') { stopOAuth(); showSignInError(o.integration, answer.errorMessage); return; }
      if (o.popup.closed) {
        o.closedPolls += 1;
        if (o.closedPolls > 3) { stopOAuth(); showSignInError(o.integration, t('windowClosed')); }
      }
    }, function (err) {
      o.inFlight = false;
      if (S.oauth !== o) return;
      stopOAuth();
      if (err.errorType === 'linkTokenExpired') showError(err.message); else showSignInError(o.integration, err.message);
    });
  }

  function showSignInError(integration, message) {
    showSignIn(integration.type, false, true);
    var el = main.querySelector('.lv-error');
    failSignIn(integration, message, el);
  }

  function showWaiting(integration) {
    S.page = 'oauthWaitingPage';
    render(t('signInTo', { name: integration.name }), [
      logo(integration, true),
      h('p', { className: 'lv-center', role: 'status', text: t('waiting', { name: integration.name }) }),
      h('button', { type: 'button', className: 'lv-secondary', id: 'lv-oauth-cancel', text: t('cancel'), onclick: function () {
        var o = S.oauth; stopOAuth(); if (o) { try { o.popup.close(); } catch (e) { /* ignore */ } }
        showSignIn(integration.type, false, true);
      } })
    ]);
  }

  function connected(integration, answer) {
    S.connections[integration.type] = { status: 'active', tokenId: answer.tokenId, accounts: answer.accounts || [], payload: answer.payload };
    S.emitted[answer.tokenId] = true;
    post('brokerageAccountAccessToken', answer.payload);
    showConnected(integration.type, false);
  }

  function showConnected(type, returning) {
    var integration = S.byType[type];
    var c = S.connections[type];
    S.selected = integration;
    S.page = 'integrationConnectedPage';
    if (returning && c.payload && !S.emitted[c.tokenId]) {
      S.emitted[c.tokenId] = true;
      post('brokerageAccountAccessToken', c.payload);
    }
    var accounts = h('ul', { className: 'lv-accounts', id: 'lv-accounts', 'aria-label': t('accounts') }, (c.accounts || []).map(function (a) {
      return h('li', { 'data-account-id': a.accountId }, [h('strong', { text: a.accountName || integration.name }),
        a.accountId ? h('span', { className: 'lv-account-id', text: t('accountId') + ': ' + a.accountId }) : null]);
    }));
    var nodes = [
      logo(integration, true),
      h('p', { className: 'lv-center', id: 'lv-connected', 'data-token-id': c.tokenId, text: (returning ? t('returning') + ' — ' : '') + t('connectedTo', { name: integration.name }) }),
      h('h2', { className: 'lv-muted', text: t('accounts') }), accounts,
      h('button', { type: 'button', className: 'lv-primary', id: 'lv-done', text: t('done'), onclick: function () { closeLink('done'); } })
    ];
    if (!S.restrict) {
      nodes.push(h('button', { type: 'button', className: 'lv-secondary', id: 'lv-link-another', text: t('linkAnother'), onclick: function () { S.fixedType = null; showCatalog(); } }));
    }
    render(integration.name, nodes, { focus: document.getElementById('lv-done') });
    var done = document.getElementById('lv-done');
    if (done) done.focus();
  }

  backButton.addEventListener('click', function () { stopOAuth(); showCatalog(); });
  closeButton.addEventListener('click', function () { closeLink('close'); });

  // --------------------------------------------------------------------------------------- start-up
  var sessionReady = null;

  function proceed() {
    if (!sessionReady || !S.tokensSettled || S.started) return;
    S.started = true;
    sessionReady.then(function (content) {
      var tokens = S.accessTokens || [];
      if (tokens.length === 0) return content;
      var list = tokens.map(function (x) { return { accessToken: String((x && x.accessToken) || ''), brokerType: String((x && x.brokerType) || '') }; });
      return api('/link/api/return-tokens', { tokens: list }).then(function (answer) {
        (answer.connections || []).forEach(function (c) { S.connections[c.brokerType] = c; });
        return content;
      }, function () { return content; });
    }).then(route, function (err) { showError(err.message); });
  }

  function route() {
    if (S.fixedType && S.byType[S.fixedType]) { openIntegration(S.fixedType, false); return; }
    var types = Object.keys(S.connections).filter(function (k) { return S.byType[k]; });
    var active = types.filter(function (k) { return S.connections[k].status === 'active'; });
    var reauth = types.filter(function (k) { return S.connections[k].status === 'reauthRequired'; });
    if (reauth.length > 0) { S.selected = S.byType[reauth[0]]; showSignIn(reauth[0], true, true); return; }
    if (active.length > 0) { S.selected = S.byType[active[0]]; showConnected(active[0], true); return; }
    showCatalog();
  }

  render(t('connectTitle'), [h('p', { className: 'lv-muted', role: 'status', text: t('loading') })]);
  post('loaded');
  if (inFrame && !parentOrigin) {
    // The browser told us nothing about the parent: announce `loaded` (it carries no data) so the SDK answers,
    // and learn the parent's origin from that answer (event.origin of a message from window.parent).
    window.parent.postMessage({ type: 'loaded' }, '*');
  }
  // Without an SDK answer (opened outside an SDK), go on alone.
  setTimeout(function () { if (!S.sdkSpecs) settleTokens(); }, 1500);

  if (!authCode) {
    sessionReady = Promise.reject(new Error(t('genericError')));
  } else {
    sessionReady = api('/link/api/session', { authCode: authCode }).then(function (content) {
      S.token = content.sessionToken;
      S.integrations = content.integrations || [];
      S.integrations.forEach(function (i) { S.byType[i.type] = i; });
      S.fixedType = content.integrationType || null;
      S.restrict = content.restrictMultipleAccounts !== false;
      return content;
    });
  }
  authCode = '';
  sessionReady.catch(function () { /* shown by proceed() */ });
  proceed();
})();
