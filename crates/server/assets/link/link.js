// linkvault Link page. Speaks Mesh's web-link-sdk postMessage protocol with its parent window:
//   posts `loaded`, `brokerageAccountAccessToken`, `transferFinished` (Mesh's TransferFinishedPayload), the
//   Link event types and `close`/`done` (SessionSummary),
//   only ever to the parent's origin; accepts `meshSDKSpecs`, `frontAccessTokens` and `closeRequested` only
//   from the parent window and origin. Everything else is ignored.
// A link token with `transferOptions` (and a write-scoped key) runs the transfer flow after sign-in, or at once
// for a return user whose tokenId the SDK passed: asset, network, amount, preview, confirm, MFA, pending, done.
// The destination address always comes from the server's session (the page cannot choose it).
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
      returning: 'Welcome back', accountId: 'Account ID',
      purposeRead: '{app} asks to read your account: balances and holdings. It cannot move funds.',
      purposeTransfer: '{app} asks you to send funds from your account to {app}. You confirm every transfer.',
      purposeGeneric: 'An app asks to connect to your account.',
      balance: 'Balance', available: '{amount} available', chooseAsset: 'Choose what to send',
      chooseNetwork: 'Choose a network', networkFor: 'Network for {symbol}', minimum: 'Minimum {amount}',
      fee: 'Fee {amount}', enterAmount: 'Amount to send', amountLabel: 'Amount in {unit}', showIn: 'Enter in {unit}',
      approx: '≈ {amount}', continueBtn: 'Continue', amountInvalid: 'Enter an amount greater than zero.',
      amountBelowMin: 'The minimum for this network is {amount}.', amountTooPrecise: 'Use at most {n} decimals.',
      previewTitle: 'Review the transfer', youSend: 'You send', to: 'To', network: 'Network',
      exchangeFee: '{name} fee', networkFee: 'Network fee', included: 'Included', total: 'Total',
      expiresIn: 'This quote is valid for {time}.', confirm: 'Confirm transfer', changeAmount: 'Change the amount',
      expiredTitle: 'The quote expired', expiredText: 'Prices and fees change, so quotes are valid for a short time. Get a new one to continue.',
      refresh: 'Get a new quote', transferMfaPrompt: '{name} asks for a second factor to confirm this transfer. Enter the code from your authenticator app.',
      sandboxCode: 'Sandbox: the code is 123456.', mfaFailed: 'That code was not accepted. Check it and try again.',
      pendingTitle: 'Transfer sent', pendingText: '{name} is sending the transfer. This usually takes a few seconds.',
      stillPending: '{name} accepted the transfer; it is still on its way. {app} will see it arrive.',
      successTitle: 'Transfer complete', successText: '{amount} sent to {app}.', txHash: 'Transaction hash',
      transferId: 'Transfer ID', noAssetsTitle: 'Nothing to send', noAssetsText: 'None of what you hold in {name} can be sent where {app} asks.',
      heldNothing: 'This account holds no crypto.', ineligible_noEligibleNetworks: 'not on a supported network',
      ineligible_symbolDoesNotMatch: 'not the asset asked for', ineligible_insufficientBalance: 'balance too low',
      ineligible_other: 'cannot be sent', ineligible_notSupportedForTransferByTarget: 'not asked for by {app}',
      ineligible_notSupportedForTransferBySource: '{name} cannot send it', ineligible_amountNotSufficient: 'balance too low for the amount asked',
      ineligible_noPrice: 'no price available', amountFixed: 'The amount is set by {app}.',
      insufficientBalanceTitle: 'Insufficient balance', belowMinimumTitle: 'Amount below the minimum',
      unsupportedNetworkTitle: 'Network not supported', unsupportedAddressTitle: 'Address not supported',
      unsupportedAssetTitle: 'Asset not supported', transferFailedTitle: 'The transfer did not go through',
      tryAgain: 'Try again', chooseOther: 'Choose another asset', unknownApp: 'the app',
      readOnly: 'Read-only access', transferAccess: 'Transfer access'
    },
    fr: {
      connectTitle: 'Connecter un compte', search: 'Rechercher', searchLabel: 'Rechercher une intégration',
      noResults: 'Aucune intégration ne correspond.', connected: 'Connecté', reauth: 'Se reconnecter',
      signInTo: 'Connexion à {name}', username: "Nom d'utilisateur", password: 'Mot de passe', signIn: 'Se connecter', apiKey: 'Clé API', apiSecret: 'Secret API',
      working: 'Veuillez patienter…', mfaTitle: 'Vérification', mfaPrompt: "Saisissez le code de votre application d'authentification.",
      mfaCode: 'Code de vérification', verify: 'Vérifier', oauthPrompt: 'Vous vous connecterez à {name} dans une nouvelle fenêtre.',
      continueTo: 'Continuer vers {name}', waiting: 'En attente de votre connexion à {name}…',
      cancel: 'Annuler', connectedTo: 'Connecté à {name}', accounts: 'Comptes', done: 'Terminé',
      linkAnother: 'Connecter un autre compte', close: 'Fermer', back: 'Retour', errorTitle: 'Une erreur est survenue',
      reauthNotice: 'Votre session {name} a expiré. Reconnectez-vous pour conserver cette connexion.',
      popupBlocked: 'La fenêtre de connexion a été bloquée. Autorisez les fenêtres pop-up et réessayez.',
      windowClosed: 'La fenêtre de connexion a été fermée avant la fin.', loading: 'Chargement…',
      secured: 'Sécurisé par linkvault', genericError: 'Une erreur est survenue. Veuillez réessayer.',
      returning: 'Bon retour', accountId: 'Identifiant du compte',
      purposeRead: '{app} demande à lire votre compte : soldes et avoirs. Aucun fonds ne peut être déplacé.',
      purposeTransfer: '{app} vous demande d\'envoyer des fonds de votre compte vers {app}. Vous confirmez chaque transfert.',
      purposeGeneric: 'Une application demande à se connecter à votre compte.',
      balance: 'Solde', available: '{amount} disponibles', chooseAsset: 'Choisissez quoi envoyer',
      chooseNetwork: 'Choisissez un réseau', networkFor: 'Réseau pour {symbol}', minimum: 'Minimum {amount}',
      fee: 'Frais {amount}', enterAmount: 'Montant à envoyer', amountLabel: 'Montant en {unit}', showIn: 'Saisir en {unit}',
      approx: '≈ {amount}', continueBtn: 'Continuer', amountInvalid: 'Saisissez un montant supérieur à zéro.',
      amountBelowMin: 'Le minimum sur ce réseau est {amount}.', amountTooPrecise: 'Utilisez au plus {n} décimales.',
      previewTitle: 'Vérifiez le transfert', youSend: 'Vous envoyez', to: 'Vers', network: 'Réseau',
      exchangeFee: 'Frais {name}', networkFee: 'Frais de réseau', included: 'Inclus', total: 'Total',
      expiresIn: 'Ce devis est valable {time}.', confirm: 'Confirmer le transfert', changeAmount: 'Modifier le montant',
      expiredTitle: 'Le devis a expiré', expiredText: 'Les prix et les frais changent : un devis n\'est valable que peu de temps. Demandez-en un nouveau.',
      refresh: 'Nouveau devis', transferMfaPrompt: '{name} demande un second facteur pour confirmer ce transfert. Saisissez le code de votre application.',
      sandboxCode: 'Sandbox : le code est 123456.', mfaFailed: 'Ce code n\'a pas été accepté. Vérifiez-le et réessayez.',
      pendingTitle: 'Transfert envoyé', pendingText: '{name} envoie le transfert. Cela prend en général quelques secondes.',
      stillPending: '{name} a accepté le transfert ; il est en route. {app} le verra arriver.',
      successTitle: 'Transfert terminé', successText: '{amount} envoyés à {app}.', txHash: 'Hash de la transaction',
      transferId: 'Identifiant du transfert', noAssetsTitle: 'Rien à envoyer', noAssetsText: 'Rien de ce que vous détenez chez {name} ne peut être envoyé là où {app} le demande.',
      heldNothing: 'Ce compte ne détient aucune crypto.', ineligible_noEligibleNetworks: 'pas sur un réseau pris en charge',
      ineligible_symbolDoesNotMatch: 'pas l\'actif demandé', ineligible_insufficientBalance: 'solde insuffisant',
      ineligible_other: 'ne peut pas être envoyé', ineligible_notSupportedForTransferByTarget: 'non demandé par {app}',
      ineligible_notSupportedForTransferBySource: '{name} ne peut pas l\'envoyer', ineligible_amountNotSufficient: 'solde insuffisant pour le montant demandé',
      ineligible_noPrice: 'pas de prix disponible', amountFixed: 'Le montant est fixé par {app}.',
      insufficientBalanceTitle: 'Solde insuffisant', belowMinimumTitle: 'Montant inférieur au minimum',
      unsupportedNetworkTitle: 'Réseau non pris en charge', unsupportedAddressTitle: 'Adresse non prise en charge',
      unsupportedAssetTitle: 'Actif non pris en charge', transferFailedTitle: 'Le transfert n\'a pas abouti',
      tryAgain: 'Réessayer', chooseOther: 'Choisir un autre actif', unknownApp: 'l\'application',
      readOnly: 'Accès en lecture seule', transferAccess: 'Accès aux transferts'
    },
    es: {
      connectTitle: 'Conectar una cuenta', search: 'Buscar', searchLabel: 'Buscar integraciones',
      noResults: 'Ninguna integración coincide.', connected: 'Conectada', reauth: 'Iniciar sesión de nuevo',
      signInTo: 'Iniciar sesión en {name}', username: 'Usuario', password: 'Contraseña', signIn: 'Iniciar sesión', apiKey: 'Clave API', apiSecret: 'Secreto de la API',
      working: 'Espere…', mfaTitle: 'Verificación', mfaPrompt: 'Introduzca el código de su aplicación de autenticación.',
      mfaCode: 'Código de verificación', verify: 'Verificar', oauthPrompt: 'Iniciará sesión en {name} en una ventana nueva.',
      continueTo: 'Continuar a {name}', waiting: 'Esperando a que termine de iniciar sesión en {name}…',
      cancel: 'Cancelar', connectedTo: 'Conectada a {name}', accounts: 'Cuentas', done: 'Listo',
      linkAnother: 'Conectar otra cuenta', close: 'Cerrar', back: 'Atrás', errorTitle: 'Algo salió mal',
      reauthNotice: 'Su sesión de {name} terminó. Inicie sesión de nuevo para mantener esta conexión.',
      popupBlocked: 'Se bloqueó la ventana de inicio de sesión. Permita ventanas emergentes e inténtelo de nuevo.',
      windowClosed: 'La ventana se cerró antes de terminar.', loading: 'Cargando…',
      secured: 'Protegido por linkvault', genericError: 'Algo salió mal. Inténtelo de nuevo.',
      returning: 'Bienvenido de nuevo', accountId: 'ID de cuenta',
      purposeRead: '{app} pide leer su cuenta: saldos y activos. No puede mover fondos.',
      purposeTransfer: '{app} le pide enviar fondos de su cuenta a {app}. Usted confirma cada transferencia.',
      purposeGeneric: 'Una aplicación pide conectarse a su cuenta.',
      balance: 'Saldo', available: '{amount} disponibles', chooseAsset: 'Elija qué enviar',
      chooseNetwork: 'Elija una red', networkFor: 'Red para {symbol}', minimum: 'Mínimo {amount}',
      fee: 'Comisión {amount}', enterAmount: 'Importe a enviar', amountLabel: 'Importe en {unit}', showIn: 'Introducir en {unit}',
      approx: '≈ {amount}', continueBtn: 'Continuar', amountInvalid: 'Introduzca un importe mayor que cero.',
      amountBelowMin: 'El mínimo en esta red es {amount}.', amountTooPrecise: 'Use como máximo {n} decimales.',
      previewTitle: 'Revise la transferencia', youSend: 'Usted envía', to: 'A', network: 'Red',
      exchangeFee: 'Comisión de {name}', networkFee: 'Comisión de red', included: 'Incluida', total: 'Total',
      expiresIn: 'Esta cotización es válida durante {time}.', confirm: 'Confirmar transferencia', changeAmount: 'Cambiar el importe',
      expiredTitle: 'La cotización caducó', expiredText: 'Los precios y las comisiones cambian: las cotizaciones duran poco. Pida una nueva para continuar.',
      refresh: 'Nueva cotización', transferMfaPrompt: '{name} pide un segundo factor para confirmar esta transferencia. Introduzca el código de su aplicación.',
      sandboxCode: 'Sandbox: el código es 123456.', mfaFailed: 'Ese código no fue aceptado. Compruébelo e inténtelo de nuevo.',
      pendingTitle: 'Transferencia enviada', pendingText: '{name} está enviando la transferencia. Suele tardar unos segundos.',
      stillPending: '{name} aceptó la transferencia; está en camino. {app} verá cuando llegue.',
      successTitle: 'Transferencia completada', successText: '{amount} enviados a {app}.', txHash: 'Hash de la transacción',
      transferId: 'ID de la transferencia', noAssetsTitle: 'Nada que enviar', noAssetsText: 'Nada de lo que tiene en {name} puede enviarse adonde pide {app}.',
      heldNothing: 'Esta cuenta no tiene criptoactivos.', ineligible_noEligibleNetworks: 'no está en una red admitida',
      ineligible_symbolDoesNotMatch: 'no es el activo pedido', ineligible_insufficientBalance: 'saldo insuficiente',
      ineligible_other: 'no se puede enviar', ineligible_notSupportedForTransferByTarget: 'no lo pide {app}',
      ineligible_notSupportedForTransferBySource: '{name} no puede enviarlo', ineligible_amountNotSufficient: 'saldo insuficiente para el importe pedido',
      ineligible_noPrice: 'sin precio disponible', amountFixed: 'El importe lo fija {app}.',
      insufficientBalanceTitle: 'Saldo insuficiente', belowMinimumTitle: 'Importe por debajo del mínimo',
      unsupportedNetworkTitle: 'Red no admitida', unsupportedAddressTitle: 'Dirección no admitida',
      unsupportedAssetTitle: 'Activo no admitido', transferFailedTitle: 'La transferencia no se realizó',
      tryAgain: 'Reintentar', chooseOther: 'Elegir otro activo', unknownApp: 'la aplicación',
      readOnly: 'Acceso de solo lectura', transferAccess: 'Acceso a transferencias'
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

  // Timers belong to the screen that started them: every new screen stops them.
  var screenTimers = [];
  var backAction = null;
  function every(ms, fn) { var id = setInterval(fn, ms); screenTimers.push(id); return id; }
  function later(ms, fn) { var id = setTimeout(fn, ms); screenTimers.push(id); return id; }

  function render(title, nodes, options) {
    options = options || {};
    screenTimers.forEach(function (id) { clearInterval(id); clearTimeout(id); });
    screenTimers = [];
    titleEl.textContent = title;
    document.title = title;
    // `back`: true for the catalog, a function for the previous step of a flow, else no way back.
    backAction = typeof options.back === 'function' ? options.back : (options.back ? toCatalog : null);
    backButton.hidden = !backAction;
    main.setAttribute('data-page', S.page);
    // A missing optional part (null/undefined) renders as nothing, never as the text "null".
    main.replaceChildren.apply(main, (nodes || []).filter(function (n) { return n !== null && n !== undefined && n !== false; }));
    var focus = options.focus || main.querySelector('input, button');
    if (focus) focus.focus(); else main.focus();
  }

  // The integration's brand colours (Mesh's `style`: hex without '#') as CSS custom properties, for the
  // current theme. Set through the CSSOM, which the page's CSP (style-src 'self') allows.
  var STYLE_PROPS = { fieldActive: '--field-active', buttonPrimary: '--accent', buttonHover: '--accent-hover', buttonText: '--accent-fg', buttonTextHover: '--accent-fg-hover' };
  function darkTheme() {
    if (theme === 'dark') return true;
    if (theme === 'light') return false;
    return !!(window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches);
  }
  var styled = null;
  function applyStyle(integration) {
    styled = integration || null;
    var style = (integration && integration.style) || {};
    var suffix = darkTheme() ? 'Dark' : 'Light';
    Object.keys(STYLE_PROPS).forEach(function (k) {
      var v = style[k + suffix];
      if (typeof v === 'string' && /^[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$/.test(v)) root.style.setProperty(STYLE_PROPS[k], '#' + v);
      else root.style.removeProperty(STYLE_PROPS[k]);
    });
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

  // The system theme can change while Link is open: follow it with the brand colours too.
  if (theme !== 'dark' && theme !== 'light' && window.matchMedia) {
    var scheme = window.matchMedia('(prefers-color-scheme: dark)');
    if (scheme.addEventListener) scheme.addEventListener('change', function () { applyStyle(styled); });
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
    sdkSpecs: null, accessTokens: null, tokensSettled: !inFrame,
    transferOptions: null, scope: 'read', appName: '', userId: null, sandbox: false, connectedHere: false,
    // The transfer in progress: {integration, tokenId, configure, holding, network, amount, fiat, preview, result}.
    transfer: null
  };

  function summary(page, errorMessage) {
    var s = { page: page || S.page };
    if (S.selected) {
      s.selectedIntegration = { id: S.selected.id, name: S.selected.name, integrationType: S.selected.type, integrationName: S.selected.name };
    }
    var x = S.transfer;
    if (x && x.holding) {
      var p = x.preview || {};
      s.transfer = { symbol: x.holding.symbol };
      if (x.network) s.transfer.networkId = x.network.id;
      if (p.previewId) s.transfer.previewId = p.previewId;
      if (typeof p.amount === 'number') s.transfer.amount = p.amount;
      if (typeof p.amountInFiat === 'number') s.transfer.amountInFiat = p.amountInFiat;
      if (S.transferOptions && S.transferOptions.transactionId) s.transfer.transactionId = S.transferOptions.transactionId;
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
          error.errorData = (json.errorData && typeof json.errorData === 'object') ? json.errorData : {};
          error.detail = json.message || '';
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
    applyStyle(null);
    render(t('connectTitle'), [purpose(), search, list, empty], { focus: search });
    post('homePageLoaded');
  }

  // Which app is asking, and for what: read access, or a transfer to the app.
  function purpose() {
    var app = S.appName || t('unknownApp');
    var transfer = !!S.transferOptions;
    return h('p', { className: 'lv-purpose', id: 'lv-purpose', 'data-scope': transfer ? 'transfer' : 'read' }, [
      h('strong', { text: transfer ? t('transferAccess') : t('readOnly') }), ' ',
      S.appName ? t(transfer ? 'purposeTransfer' : 'purposeRead', { app: app }) : t('purposeGeneric')
    ]);
  }

  function openIntegration(type, fromCatalog) {
    var integration = S.byType[type];
    if (!integration) { showCatalog(); return; }
    S.selected = integration;
    applyStyle(integration);
    var c = S.connections[type];
    if (c && c.status === 'active') afterConnection(type, true);
    else showSignIn(type, c && c.status === 'reauthRequired', fromCatalog);
  }

  // How the page names a connection to the server: `handle` (the tokenId for managed clients, the handed-out
  // access token for client-managed ones, which never see a tokenId).
  function handleOf(c) { return c.handle || c.tokenId; }

  // A usable connection: the transfer flow when the link token asks for one, else the account and its balances.
  function afterConnection(type, returning) {
    var c = S.connections[type];
    if (returning && c.payload && !S.emitted[handleOf(c)]) {
      S.emitted[handleOf(c)] = true;
      post('brokerageAccountAccessToken', c.payload);
    }
    if (S.transferOptions) startTransfer(S.byType[type], handleOf(c));
    else showConnected(type, returning);
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
      applyStyle(integration);
      render(t('signInTo', { name: integration.name }), [
        logo(integration, true), notice, purpose(),
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
    applyStyle(integration);
    render(t('signInTo', { name: integration.name }), [logo(integration, true), notice, purpose(), form], { back: canGoBack() || fromCatalog, focus: username });
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

  // OAuth: the popup is opened synchronously in the click (so it is not blocked), then sent to linkvault's
  // one-time begin URL, which binds the sign-in to this browser and redirects to the integration. The callback page tells us; we also poll in case the opener link is lost.
  function startOAuth(integration, errorEl, button) {
    stopOAuth();
    var popup = window.open('', 'lv-oauth-' + Date.now(), 'popup,width=480,height=720');
    if (!popup) { failSignIn(integration, t('popupBlocked'), errorEl); return; }
    try { popup.opener = window; } catch (e) { /* ignore */ }
    busy(button, true);
    api('/link/api/oauth/start', { type: integration.type }).then(function (answer) {
      busy(button, false);
      popup.location.href = answer.popupUrl;
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
    S.connections[integration.type] = { status: 'active', tokenId: answer.tokenId, handle: answer.handle, accounts: answer.accounts || [], payload: answer.payload };
    S.emitted[handleOf(answer)] = true;
    S.connectedHere = true;
    post('brokerageAccountAccessToken', answer.payload);
    afterConnection(integration.type, false);
  }

  /** Mesh's `fund`/`cash` of each account, from the AccessTokenPayload, by accountId. */
  function balancesOf(c) {
    var out = {};
    var list = (c.payload && Array.isArray(c.payload.accountTokens)) ? c.payload.accountTokens : [];
    list.forEach(function (at) { if (at && at.account) out[at.account.accountId || ''] = at.account; });
    return out;
  }

  function showConnected(type, returning) {
    var integration = S.byType[type];
    var c = S.connections[type];
    S.selected = integration;
    S.page = 'integrationConnectedPage';
    applyStyle(integration);
    var balances = balancesOf(c);
    var accounts = h('ul', { className: 'lv-accounts', id: 'lv-accounts', 'aria-label': t('accounts') }, (c.accounts || []).map(function (a) {
      var b = balances[a.accountId || ''];
      var fund = b && typeof b.fund === 'number' ? b.fund : null;
      return h('li', { 'data-account-id': a.accountId }, [h('strong', { text: a.accountName || integration.name }),
        fund !== null ? h('span', { className: 'lv-account-balance', text: t('balance') + ': ' + fiat(fund) }) : null,
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
    render(integration.name, nodes, { back: canGoBack() && !(S.restrict && S.connectedHere) });
    var done = document.getElementById('lv-done');
    if (done) done.focus();
  }

  // ------------------------------------------------------------------------------- the transfer flow
  // Driven by the session's transferOptions: configure (what can go where) → asset → network (skipped when
  // there is one) → amount → preview (with its expiry) → confirm → MFA when the exchange asks → pending → done.
  // Each step posts Mesh's event for it; the end posts `transferFinished` (Mesh's TransferFinishedPayload).
  var STATUS_POLL_MS = 1500;
  var STATUS_POLLS = 40;

  function fiat(n) {
    try { return new Intl.NumberFormat(lang, { style: 'currency', currency: 'USD' }).format(n); } catch (e) { return '$' + Number(n).toFixed(2); }
  }
  function amountOf(n, symbol) {
    var text;
    try { text = new Intl.NumberFormat(lang, { maximumFractionDigits: 8 }).format(n); } catch (e) { text = String(n); }
    return text + ' ' + symbol;
  }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function row(label, value, id) {
    return [h('dt', { text: label }), h('dd', { id: id || null }, Array.isArray(value) ? value : [value])];
  }
  function feeText(fee) {
    if (!fee || num(fee.fee) === null) return null;
    var text = amountOf(fee.fee, fee.feeCurrency || '');
    return num(fee.feeInFiat) !== null ? text + ' (' + t('approx', { amount: fiat(fee.feeInFiat) }) + ')' : text;
  }
  function listNav(list) {
    list.addEventListener('keydown', function (e) {
      if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
      var items = Array.prototype.slice.call(list.querySelectorAll('button'));
      var next = items[items.indexOf(document.activeElement) + (e.key === 'ArrowDown' ? 1 : -1)];
      if (next) { next.focus(); e.preventDefault(); }
    });
    return list;
  }
  function transferBack() { return canGoBack() && !(S.restrict && S.connectedHere); }

  function startTransfer(integration, tokenId) {
    S.selected = integration;
    applyStyle(integration);
    S.transfer = { integration: integration, tokenId: tokenId };
    post('transferStarted', { integrationType: integration.type, integrationName: integration.name });
    loadConfigure();
  }

  function working(text) {
    var x = S.transfer;
    render(x.integration.name, [logo(x.integration, true), h('p', { className: 'lv-center lv-muted', role: 'status', id: 'lv-working', text: text || t('loading') })]);
  }

  /** The tokenId needs a new sign-in: that integration's sign-in, which lands on the same tokenId. */
  function needsReauth(x) {
    var c = S.connections[x.integration.type];
    if (c) c.status = 'reauthRequired';
    S.transfer = null;
    showSignIn(x.integration.type, true, canGoBack());
  }

  function loadConfigure() {
    var x = S.transfer;
    S.page = 'transferConfigurePage';
    working();
    api('/link/api/transfer/configure', { tokenId: x.tokenId }).then(function (answer) {
      if (S.transfer !== x) return;
      x.configure = answer || {};
      var holdings = Array.isArray(x.configure.holdings) ? x.configure.holdings : [];
      x.eligible = holdings.filter(function (o) { return o && o.eligibleForTransfer && Array.isArray(o.networks) && o.networks.length > 0; });
      if (x.eligible.length === 0) showNoEligible(holdings); else showAssets();
    }, function (err) {
      if (S.transfer !== x) return;
      if (err.errorType === 'reauthenticationRequired') { needsReauth(x); return; }
      post('transferConfigureError', { errorMessage: err.message });
      showTransferError(t('errorTitle'), err.message, loadConfigure);
    });
  }

  function showNoEligible(holdings) {
    var x = S.transfer;
    S.page = 'transferNoEligibleAssetsPage';
    post('transferNoEligibleAssets', {
      integrationType: x.integration.type, integrationName: x.integration.name,
      noAssetsType: holdings.length ? 'noEligibleAssets' : 'noAssets',
      arrayOfTokensHeld: holdings.map(function (o) {
        var held = { symbol: String(o.symbol || ''), amount: num(o.availableBalance) || 0 };
        if (num(o.availableBalanceInFiat) !== null) held.amountInFiat = o.availableBalanceInFiat;
        if (o.ineligibilityReason) held.ineligibilityReason = String(o.ineligibilityReason);
        return held;
      })
    });
    var list = h('ul', { className: 'lv-accounts', id: 'lv-held' }, holdings.map(function (o) {
      var key = 'ineligible_' + o.ineligibilityReason;
      var vars = { app: S.appName || t('unknownApp'), name: x.integration.name };
      var reason = STRINGS.en[key] ? t(key, vars) : t('ineligible_other');
      return h('li', { 'data-symbol': o.symbol }, [h('strong', { text: amountOf(num(o.availableBalance) || 0, o.symbol) }),
        h('span', { className: 'lv-account-id', text: reason })]);
    }));
    render(t('noAssetsTitle'), [
      logo(x.integration, true),
      h('p', { className: 'lv-center', id: 'lv-no-assets', role: 'alert', text: t('noAssetsText', { name: x.integration.name, app: S.appName || t('unknownApp') }) }),
      holdings.length ? list : h('p', { className: 'lv-muted lv-center', text: t('heldNothing') }),
      h('button', { type: 'button', className: 'lv-primary', id: 'lv-transfer-close', text: t('close'), onclick: function () { closeLink('close'); } })
    ], { back: transferBack() });
  }

  function showAssets() {
    var x = S.transfer;
    S.page = 'transferAssetSelectionPage';
    var list = listNav(h('ul', { className: 'lv-list', id: 'lv-assets', role: 'list' }, x.eligible.map(function (o) {
      var balance = amountOf(num(o.availableBalance) || 0, o.symbol);
      var inFiat = num(o.availableBalanceInFiat);
      return h('li', {}, [h('button', { type: 'button', className: 'lv-item', 'data-symbol': o.symbol, onclick: function () { selectAsset(o); } }, [
        h('span', { className: 'lv-item-name', text: o.symbol }),
        h('span', { className: 'lv-item-detail', text: t('available', { amount: balance }) + (inFiat !== null ? ' · ' + fiat(inFiat) : '') })
      ])]);
    })));
    render(t('chooseAsset'), [purpose(), list], { back: transferBack() });
  }

  function selectAsset(holding) {
    var x = S.transfer;
    x.holding = holding;
    x.amountText = null;
    // Only the networks this holding can go over (enough for the amount asked, a destination the app gave).
    x.networks = holding.networks.filter(function (n) { return n && n.eligibleForTransfer !== false; });
    if (x.networks.length === 0) x.networks = holding.networks;
    post('transferAssetSelected', { symbol: holding.symbol });
    if (x.networks.length === 1) selectNetwork(x.networks[0]); else showNetworks();
  }

  function showNetworks() {
    var x = S.transfer;
    S.page = 'transferNetworkSelectionPage';
    var list = listNav(h('ul', { className: 'lv-list', id: 'lv-networks', role: 'list' }, x.networks.map(function (n) {
      var details = [];
      if (num(n.fee) !== null) details.push(t('fee', { amount: amountOf(n.fee, n.feeCurrency || x.holding.symbol) }));
      if (num(n.minimumAmount) !== null) details.push(t('minimum', { amount: amountOf(n.minimumAmount, x.holding.symbol) }));
      return h('li', {}, [h('button', { type: 'button', className: 'lv-item', 'data-network-id': n.id, onclick: function () { selectNetwork(n); } }, [
        h('span', { className: 'lv-item-name', text: n.name }), h('span', { className: 'lv-item-detail', text: details.join(' · ') })
      ])]);
    })));
    render(t('networkFor', { symbol: x.holding.symbol }), [list], { back: showAssets });
  }

  function selectNetwork(network) {
    var x = S.transfer;
    x.network = network;
    post('transferNetworkSelected', { id: network.id, name: network.name });
    showAmount();
  }

  /** The amount the app asked for: its toAddresses entry for this symbol and network, else amountInFiat.
   *  `fixed`: set in the link token, so the server sends exactly that (the page cannot change it). */
  function requestedAmount(x) {
    var opts = S.transferOptions || {};
    var entry = (opts.toAddresses || []).filter(function (a) { return a && a.symbol === x.holding.symbol && a.networkId === x.network.id; })[0];
    if (entry && num(entry.amount) !== null) return { fiat: false, value: entry.amount, fixed: true };
    if (num(opts.amountInFiat) !== null) return { fiat: true, value: opts.amountInFiat, fixed: true };
    if (num(x.configure.amountInFiat) !== null) return { fiat: true, value: x.configure.amountInFiat, fixed: false };
    return null;
  }

  function unitPrice(holding) {
    if (num(holding.unitPrice) && holding.unitPrice > 0) return holding.unitPrice;
    var a = num(holding.availableBalance), f = num(holding.availableBalanceInFiat);
    return a && f ? f / a : null;
  }

  function showAmount() {
    var x = S.transfer;
    S.page = 'transferAmountPage';
    var price = unitPrice(x.holding);
    if (x.amountText === null || x.amountText === undefined) {
      var asked = requestedAmount(x);
      x.fiat = !!(asked && asked.fiat);
      x.fixed = !!(asked && asked.fixed);
      x.amountText = asked ? String(asked.value) : '';
    }
    var fixed = x.fixed;
    var symbol = x.holding.symbol;
    var unit = function () { return x.fiat ? 'USD' : symbol; };
    var label = h('span', { text: t('amountLabel', { unit: unit() }) });
    var input = h('input', { id: 'lv-amount', name: 'amount', inputmode: 'decimal', autocomplete: 'off', required: true, maxlength: '24',
      readonly: fixed, 'aria-describedby': 'lv-amount-hint lv-amount-error' });
    input.value = x.amountText;
    var hint = h('p', { className: 'lv-muted', id: 'lv-amount-hint', 'aria-live': 'polite' });
    var error = h('p', { className: 'lv-error', role: 'alert', id: 'lv-amount-error', hidden: true });
    var toggle = price && !fixed ? h('button', { type: 'button', className: 'lv-link', id: 'lv-amount-unit' }) : null;
    function parse() {
      var text = input.value.trim().replace(',', '.');
      if (!/^\d{1,15}(\.\d+)?$/.test(text)) return null;
      return Number(text);
    }
    function refresh() {
      label.textContent = t('amountLabel', { unit: unit() });
      if (toggle) toggle.textContent = t('showIn', { unit: x.fiat ? symbol : 'USD' });
      var v = parse();
      var parts = [t('available', { amount: amountOf(num(x.holding.availableBalance) || 0, symbol) })];
      if (fixed) parts.push(t('amountFixed', { app: S.appName || t('unknownApp') }));
      if (v !== null && price) parts.unshift(t('approx', { amount: x.fiat ? amountOf(v / price, symbol) : fiat(v * price) }));
      hint.textContent = parts.join(' · ');
    }
    input.addEventListener('input', function () { x.amountText = input.value; error.hidden = true; refresh(); });
    if (toggle) toggle.addEventListener('click', function () {
      var v = parse();
      x.fiat = !x.fiat;
      if (v !== null) input.value = x.fiat ? (v * price).toFixed(2) : String(Number((v / price).toFixed(8)));
      x.amountText = input.value;
      refresh();
      input.focus();
    });
    function fail(message) { error.textContent = message; error.hidden = false; input.setAttribute('aria-invalid', 'true'); input.focus(); }
    var form = h('form', { className: 'lv-form', novalidate: true }, [
      h('label', { for: 'lv-amount' }, [label, input]), hint, toggle, error,
      h('button', { type: 'submit', className: 'lv-primary', id: 'lv-amount-continue', text: t('continueBtn') })
    ]);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var v = parse();
      if (fixed) { x.amount = v; x.amountFiat = x.fiat; post('transferAmountEntered'); requestPreview(); return; }
      if (v === null || v <= 0) { fail(t('amountInvalid')); return; }
      var decimals = (input.value.trim().replace(',', '.').split('.')[1] || '').length;
      var most = x.fiat ? 2 : 8;
      if (decimals > most) { fail(t('amountTooPrecise', { n: most })); return; }
      var min = num(x.network.minimumAmount);
      var inCrypto = x.fiat ? (price ? v / price : null) : v;
      if (min !== null && inCrypto !== null && inCrypto < min) { fail(t('amountBelowMin', { amount: amountOf(min, symbol) })); return; }
      x.amount = v;
      x.amountFiat = x.fiat;
      post('transferAmountEntered');
      requestPreview();
    });
    refresh();
    render(t('enterAmount'), [
      h('p', { className: 'lv-center', id: 'lv-amount-asset', text: symbol + ' · ' + x.network.name }), form
    ], { back: x.networks.length > 1 ? showNetworks : showAssets, focus: input });
  }

  function requestPreview() {
    var x = S.transfer;
    S.page = 'transferPreviewPage';
    working();
    var body = { tokenId: x.tokenId, symbol: x.holding.symbol, networkId: x.network.id };
    if (x.amountFiat) body.amountInFiat = x.amount; else body.amount = x.amount;
    api('/link/api/transfer/preview', body).then(function (answer) {
      if (S.transfer !== x) return;
      var result = answer && answer.previewResult;
      if (!answer || answer.status !== 'succeeded' || !result || !result.previewId) {
        var message = (answer && answer.errorMessage) || t('genericError');
        post('transferPreviewError', { errorMessage: message });
        showRefusal('', message);
        return;
      }
      x.preview = result;
      x.expiresAt = Date.now() + Math.max(0, num(result.previewExpiresIn) || 0) * 1000;
      var previewed = {
        amount: result.amount, symbol: result.symbol, toAddress: result.toAddress, networkId: result.networkId,
        previewId: result.previewId, networkName: result.networkName, amountInFiat: result.amountInFiat, fiatCurrency: 'USD',
        integrationType: x.integration.type, integrationName: x.integration.name,
        institutionTransferFee: result.institutionTransferFee || undefined, estimatedNetworkGasFee: result.estimatedNetworkGasFee || undefined,
        userId: S.userId || undefined, clientTransactionId: result.clientTransactionId || undefined
      };
      post('transferPreviewed', JSON.parse(JSON.stringify(previewed)));
      showPreview();
    }, function (err) {
      if (S.transfer !== x) return;
      if (err.errorType === 'reauthenticationRequired') { needsReauth(x); return; }
      post('transferPreviewError', { errorMessage: err.message });
      showRefusal(err.errorData.reason || '', err.message);
    });
  }

  var REFUSAL_TITLES = {
    insufficientBalance: 'insufficientBalanceTitle', belowMinimum: 'belowMinimumTitle', unsupportedNetwork: 'unsupportedNetworkTitle',
    unsupportedAddress: 'unsupportedAddressTitle', unsupportedAsset: 'unsupportedAssetTitle'
  };

  /** A preview the exchange or linkvault refused, with the way forward that fits the reason. */
  function showRefusal(reason, message) {
    var x = S.transfer;
    S.page = 'transferPreviewErrorPage';
    var nodes = [
      h('div', { className: 'lv-big-icon', 'aria-hidden': 'true', text: '⚠' }),
      h('p', { className: 'lv-error', role: 'alert', id: 'lv-refusal', 'data-reason': reason || 'other', text: message })
    ];
    if ((reason === 'insufficientBalance' || reason === 'belowMinimum' || !reason) && !x.fixed) {
      nodes.push(h('button', { type: 'button', className: 'lv-primary', id: 'lv-change-amount', text: t('changeAmount'), onclick: showAmount }));
    } else if (reason === 'unsupportedNetwork' && x.networks.length > 1) {
      nodes.push(h('button', { type: 'button', className: 'lv-primary', id: 'lv-choose-network', text: t('chooseNetwork'), onclick: showNetworks }));
    } else if (x.eligible.length > 1) {
      nodes.push(h('button', { type: 'button', className: 'lv-primary', id: 'lv-choose-asset', text: t('chooseOther'), onclick: showAssets }));
    }
    nodes.push(h('button', { type: 'button', className: 'lv-secondary', id: 'lv-transfer-close', text: t('close'), onclick: function () { closeLink('close', message); } }));
    render(t(REFUSAL_TITLES[reason] || 'errorTitle'), nodes, { back: x.fixed ? null : showAmount });
  }

  function countdownText(ms) {
    var total = Math.max(0, Math.ceil(ms / 1000));
    var m = Math.floor(total / 60), sec = total % 60;
    return m + ':' + (sec < 10 ? '0' : '') + sec;
  }

  function showPreview() {
    var x = S.transfer;
    var p = x.preview;
    S.page = 'transferPreviewPage';
    var sym = p.symbol || x.holding.symbol;
    var send = amountOf(num(p.amount) || 0, sym) + (num(p.amountInFiat) !== null ? ' (' + t('approx', { amount: fiat(p.amountInFiat) }) + ')' : '');
    var total = amountOf(num(p.totalEstimatedAmount) || 0, sym) + (num(p.totalEstimatedAmountInFiat) !== null ? ' (' + t('approx', { amount: fiat(p.totalEstimatedAmountInFiat) }) + ')' : '');
    var details = h('dl', { className: 'lv-details', id: 'lv-preview' }, [].concat(
      row(t('youSend'), send, 'lv-preview-amount'),
      row(t('to'), [h('code', { text: p.toAddress || '' }), p.addressTag ? h('span', { text: ' · ' + p.addressTag }) : null], 'lv-preview-to'),
      row(t('network'), p.networkName || x.network.name, 'lv-preview-network'),
      row(t('exchangeFee', { name: x.integration.name }), feeText(p.institutionTransferFee) || t('included'), 'lv-preview-fee'),
      row(t('networkFee'), feeText(p.estimatedNetworkGasFee) || t('included'), 'lv-preview-gas'),
      row(t('total'), total, 'lv-preview-total')
    ));
    var countdown = h('p', { className: 'lv-muted lv-center', id: 'lv-countdown', role: 'timer', 'aria-live': 'off' });
    var confirm = h('button', { type: 'button', className: 'lv-primary', id: 'lv-confirm', text: t('confirm') });
    confirm.addEventListener('click', function () { busy(confirm, true); execute(null); });
    function tick() {
      var left = x.expiresAt - Date.now();
      if (left <= 0) { showExpired(); return; }
      countdown.textContent = t('expiresIn', { time: countdownText(left) });
    }
    render(t('previewTitle'), [details, countdown, confirm,
      x.fixed ? null : h('button', { type: 'button', className: 'lv-secondary', id: 'lv-change-amount', text: t('changeAmount'), onclick: showAmount })
    ], { back: showAmount, focus: confirm });
    tick();
    if (S.page === 'transferPreviewPage') every(500, tick);
  }

  function showExpired() {
    S.page = 'transferPreviewExpiredPage';
    render(t('expiredTitle'), [
      h('div', { className: 'lv-big-icon', 'aria-hidden': 'true', text: '⏱' }),
      h('p', { className: 'lv-center', role: 'alert', id: 'lv-expired', text: t('expiredText') }),
      h('button', { type: 'button', className: 'lv-primary', id: 'lv-refresh', text: t('refresh'), onclick: requestPreview }),
      S.transfer.fixed ? null : h('button', { type: 'button', className: 'lv-secondary', id: 'lv-change-amount', text: t('changeAmount'), onclick: showAmount })
    ], { back: showAmount });
  }

  function execute(mfaCode) {
    var x = S.transfer;
    var body = { tokenId: x.tokenId, previewId: x.preview.previewId };
    if (mfaCode) body.mfaCode = mfaCode;
    api('/link/api/transfer/execute', body).then(function (answer) {
      if (S.transfer !== x) return;
      var status = answer && answer.status;
      if (status === 'mfaRequired') { post('transferMfaRequired'); showTransferMfa(null, answer.mfaType); return; }
      if (status === 'mfaFailed') { showTransferMfa(t('mfaFailed'), answer.mfaType); return; }
      var r = answer && answer.executeTransferResult;
      if ((status === 'succeeded' || status === 'inProgress') && r && r.transferId) { executed(r); return; }
      var message = (answer && answer.errorMessage) || t('genericError');
      post('transferExecutionError', { errorMessage: message });
      // The exchange refused before sending: a new quote is safe.
      showTransferError(t('transferFailedTitle'), message, requestPreview);
    }, function (err) {
      if (S.transfer !== x) return;
      if (err.errorType === 'previewExpired') { showExpired(); return; }
      if (err.errorType === 'reauthenticationRequired') { needsReauth(x); return; }
      post('transferExecutionError', { errorMessage: err.message });
      if (err.errorData.reason) { showRefusal(err.errorData.reason, err.message); return; }
      // An unknown outcome: executing the same preview again never sends twice.
      showTransferError(t('transferFailedTitle'), err.message, function () { working(t('working')); execute(null); });
    });
  }

  function showTransferMfa(errorText, mfaType) {
    var x = S.transfer;
    S.page = 'transferMfaPage';
    var code = h('input', { id: 'lv-transfer-mfa', name: 'mfaCode', inputmode: 'numeric', autocomplete: 'one-time-code', required: true, maxlength: '12', 'data-mfa-type': mfaType || null });
    var error = h('p', { className: 'lv-error', role: 'alert', id: 'lv-transfer-mfa-error', hidden: !errorText, text: errorText || '' });
    var submit = h('button', { type: 'submit', className: 'lv-primary', id: 'lv-transfer-mfa-submit', text: t('verify') });
    var form = h('form', { className: 'lv-form', novalidate: true }, [
      h('p', { className: 'lv-muted', text: t('transferMfaPrompt', { name: x.integration.name }) }),
      S.sandbox ? h('p', { className: 'lv-notice', id: 'lv-sandbox-code', text: t('sandboxCode') }) : null,
      h('label', { for: 'lv-transfer-mfa' }, [t('mfaCode'), code]), error, submit
    ]);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var value = code.value.trim();
      if (!value) { code.focus(); return; }
      post('transferMfaEntered');
      busy(submit, true);
      execute(value);
    });
    render(t('mfaTitle'), [logo(x.integration, true), form], { focus: code });
  }

  function executed(r) {
    var x = S.transfer;
    x.result = r;
    var done = r.status === 'succeeded' && r.hash;
    post('transferExecuted', JSON.parse(JSON.stringify({
      status: done ? 'success' : 'pending', txId: r.transferId, fromAddress: r.fromAddress || '', toAddress: r.toAddress || '',
      symbol: r.symbol, amount: r.amount, networkId: r.networkId, userId: S.userId || undefined,
      clientTransactionId: (x.preview && x.preview.clientTransactionId) || undefined
    })));
    if (done) showSuccess(); else showPending();
  }

  function showPending() {
    var x = S.transfer;
    S.page = 'transferPendingPage';
    post('transferInitiated', { integrationType: x.integration.type, integrationName: x.integration.name, status: 'pending' });
    render(t('pendingTitle'), [
      h('div', { className: 'lv-spinner', 'aria-hidden': 'true' }),
      h('p', { className: 'lv-center', role: 'status', id: 'lv-pending', text: t('pendingText', { name: x.integration.name }) })
    ]);
    var polls = 0, inFlight = false;
    every(STATUS_POLL_MS, function () {
      if (inFlight || S.transfer !== x || S.page !== 'transferPendingPage') return;
      polls += 1;
      if (polls > STATUS_POLLS) { showSuccess(); return; }
      inFlight = true;
      api('/link/api/transfer/status', { tokenId: x.tokenId, transferId: x.result.transferId }).then(function (answer) {
        inFlight = false;
        if (S.transfer !== x || S.page !== 'transferPendingPage') return;
        if (answer.status === 'succeeded') { if (answer.hash) x.result.hash = answer.hash; x.result.status = 'succeeded'; showSuccess(); }
        else if (answer.status === 'failed') {
          var message = t('transferFailedTitle');
          post('transferExecutionError', { errorMessage: message });
          showTransferError(message, t('genericError'), null);
        }
      }, function () { inFlight = false; /* transient: the next poll asks again, up to the bound */ });
    });
  }

  /** The end: Mesh's `transferFinished` once, and the success (or still-on-its-way) screen. */
  function showSuccess() {
    var x = S.transfer;
    var r = x.result;
    var settled = r.status === 'succeeded';
    S.page = 'transferExecutedPage';
    if (!x.finished) {
      x.finished = true;
      var finished = {
        status: 'success', txId: r.transferId, fromAddress: r.fromAddress || '', toAddress: r.toAddress || '', symbol: r.symbol,
        amount: r.amount, networkId: r.networkId, userId: S.userId || undefined,
        clientTransactionId: (x.preview && x.preview.clientTransactionId) || undefined,
        amountInFiat: num(r.amountInFiat) !== null ? r.amountInFiat : undefined,
        totalAmountInFiat: num(r.totalAmountInFiat) !== null ? r.totalAmountInFiat : undefined,
        networkName: r.networkName || undefined, txHash: r.hash || undefined, transferId: r.transferId
      };
      post('transferFinished', JSON.parse(JSON.stringify(finished)));
    }
    var app = S.appName || t('unknownApp');
    var details = h('dl', { className: 'lv-details', id: 'lv-receipt' }, [].concat(
      row(t('network'), r.networkName || x.network.name),
      row(t('to'), h('code', { text: r.toAddress || '' })),
      r.hash ? row(t('txHash'), h('code', { id: 'lv-tx-hash', text: r.hash })) : [],
      row(t('transferId'), h('code', { id: 'lv-transfer-id', text: r.transferId }))
    ));
    render(settled ? t('successTitle') : t('pendingTitle'), [
      h('div', { className: 'lv-big-icon lv-ok', 'aria-hidden': 'true', text: '✓' }),
      h('p', { className: 'lv-center', role: 'status', id: settled ? 'lv-success' : 'lv-still-pending',
        text: settled ? t('successText', { amount: amountOf(num(r.amount) || 0, r.symbol), app: app }) : t('stillPending', { name: x.integration.name, app: app }) }),
      details,
      h('button', { type: 'button', className: 'lv-primary', id: 'lv-transfer-done', text: t('done'), onclick: function () { closeLink('done'); } })
    ]);
  }

  function showTransferError(title, message, retry) {
    S.page = 'transferErrorPage';
    render(title, [
      h('div', { className: 'lv-big-icon', 'aria-hidden': 'true', text: '⚠' }),
      h('p', { className: 'lv-error', role: 'alert', id: 'lv-transfer-error', text: message }),
      retry ? h('button', { type: 'button', className: 'lv-primary', id: 'lv-transfer-retry', text: t('tryAgain'), onclick: retry }) : null,
      h('button', { type: 'button', className: retry ? 'lv-secondary' : 'lv-primary', id: 'lv-transfer-close', text: t('close'), onclick: function () { closeLink('close', message); } })
    ]);
  }

  function toCatalog() { stopOAuth(); S.transfer = null; showCatalog(); }
  backButton.addEventListener('click', function () { if (backAction) backAction(); });
  closeButton.addEventListener('click', function () { closeLink('close'); });
  // Escape goes back a screen when there is one (the close button is one Tab away, never triggered by a stray key).
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && !backButton.hidden) { e.preventDefault(); backButton.click(); }
  });

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

  // The seeds' return-user journey: with integrationId, straight to it (its tokenId → the transfer flow or the
  // account; none or one needing re-authentication → its sign-in). Without, the catalog, connected ones marked;
  // a tokenId that needs re-authentication opens that sign-in (back leads to the catalog).
  function route() {
    if (S.fixedType && S.byType[S.fixedType]) { openIntegration(S.fixedType, false); return; }
    var types = Object.keys(S.connections).filter(function (k) { return S.byType[k]; });
    var reauth = types.filter(function (k) { return S.connections[k].status === 'reauthRequired'; });
    if (reauth.length > 0) { S.selected = S.byType[reauth[0]]; showSignIn(reauth[0], true, true); return; }
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
      if (!S.fixedType && content.integrationId) {
        S.integrations.forEach(function (i) { if (i.id === content.integrationId) S.fixedType = i.type; });
      }
      S.restrict = content.restrictMultipleAccounts !== false;
      S.scope = content.scope === 'write' ? 'write' : 'read';
      // The server sends no transferOptions to a read-scoped session; the page checks as well.
      S.transferOptions = (S.scope === 'write' && content.transferOptions && Array.isArray(content.transferOptions.toAddresses)) ? content.transferOptions : null;
      S.appName = (content.client && typeof content.client.name === 'string') ? content.client.name.slice(0, 80) : '';
      S.userId = content.userId || null;
      S.sandbox = content.sandbox === true;
      return content;
    });
  }
  authCode = '';
  sessionReady.catch(function () { /* shown by proceed() */ });
  proceed();
})();
