// linkvault-link.js — linkvault's own browser client for the hosted Link page, for apps that do not use
// Mesh's @meshconnect/web-link-sdk. Same options, callbacks and postMessage protocol:
//
//   const link = LinkvaultLink.createLink({ renderType, theme, language, accessTokens,
//                                           onIntegrationConnected, onExit, onEvent, onTransferFinished });
//   link.openLink(linkToken /* base64 URL from POST /api/v1/linktoken */, iframeId /* for renderType 'embedded' */);
//   link.closeLink();
//
// Messages are accepted only from the Link iframe's window and the link token's origin, and sent only to
// that origin. Works as a classic <script> (window.LinkvaultLink) or as an ES module import of its globals.
(function (global) {
  'use strict';

  var VERSION = 'linkvault-1';
  var EVENT_TYPES = [
    'integrationConnected', 'integrationConnectionError', 'integrationMfaRequired', 'integrationMfaEntered',
    'integrationOAuthStarted', 'integrationAccountSelectionRequired', 'transferCompleted', 'integrationSelected',
    'credentialsEntered', 'transferStarted', 'transferPreviewed', 'transferPreviewError', 'transferExecutionError',
    'pageLoaded', 'transferAssetSelected', 'transferNetworkSelected', 'transferAmountEntered', 'transferMfaRequired',
    'transferMfaEntered', 'transferKycRequired', 'transferExecuted', 'transferInitiated', 'transferNoEligibleAssets',
    'walletMessageSigned', 'verifyDonePage', 'verifyWalletRejected', 'connectionDeclined', 'connectionUnavailable',
    'transferDeclined', 'transferConfigureError', 'done', 'close', 'SDKinjectedWalletProviders', 'legalTermsViewed',
    'seeWhatHappenedClicked', 'executeFundingStep', 'fundingOptionsUpdated', 'fundingOptionsViewed',
    'gasIncreaseWarning', 'linkTransferQRGenerated', 'methodSelected', 'defiWalletError', 'homePageLoaded'
  ];
  var POPUP_ID = 'linkvault-link-popup';
  var POPUP_IFRAME_ID = 'linkvault-link-popup__iframe';

  function appendParam(url, key, value) {
    return url + (url.indexOf('?') >= 0 ? '&' : '?') + key + '=' + value;
  }

  function decodeLinkToken(linkToken) {
    if (!linkToken || !/^[A-Za-z0-9+/]+={0,2}$/.test(linkToken)) return null;
    var url;
    try { url = global.atob(linkToken); } catch (e) { return null; }
    if (url.indexOf('http://') !== 0 && url.indexOf('https://') !== 0) return null;
    try { new URL(url); } catch (e) { return null; }
    return url;
  }

  function style(el, props) { Object.keys(props).forEach(function (k) { el.style[k] = props[k]; }); }

  // The popup is styled through the CSSOM (element.style), which a strict CSP (no inline styles) allows.
  function addPopup(url) {
    removePopup();
    var rootEl = document.createElement('div');
    rootEl.id = POPUP_ID;
    style(rootEl, { position: 'fixed', inset: '0', display: 'flex', alignItems: 'center', justifyContent: 'center', zIndex: '10000' });
    var backdrop = document.createElement('div');
    style(backdrop, { position: 'absolute', inset: '0', background: 'black', opacity: '0.6' });
    var content = document.createElement('div');
    var small = global.matchMedia && global.matchMedia('(max-width: 768px)').matches;
    style(content, small
      ? { position: 'relative', width: '100vw', height: '100vh', display: 'flex', zIndex: '10001' }
      : { position: 'relative', width: '420px', maxWidth: '100vw', height: '80vh', maxHeight: '710px', minHeight: 'min(685px, 100vh)', display: 'flex', zIndex: '10001', borderRadius: '24px', overflow: 'hidden' });
    var iframe = document.createElement('iframe');
    iframe.id = POPUP_IFRAME_ID;
    iframe.title = 'Connect an account';
    style(iframe, { border: 'none', width: '100%', flexGrow: '1', background: 'white' });
    iframe.src = url;
    content.appendChild(iframe);
    rootEl.appendChild(backdrop);
    rootEl.appendChild(content);
    document.body.appendChild(rootEl);
    return iframe;
  }

  function removePopup() {
    var existing = document.getElementById(POPUP_ID);
    if (existing && existing.parentElement) existing.parentElement.removeChild(existing);
  }

  function createLink(options) {
    options = options || {};
    var state = { iframe: null, origin: null, listener: null, embedded: false };

    function call(name) {
      var fn = options[name];
      if (typeof fn !== 'function') return;
      try { fn.apply(null, Array.prototype.slice.call(arguments, 1)); } catch (e) { if (global.console) console.error(e); }
    }

    function send(message) {
      if (state.iframe && state.iframe.contentWindow && state.origin) {
        state.iframe.contentWindow.postMessage(message, state.origin);
      }
    }

    function teardown() {
      if (state.listener) global.removeEventListener('message', state.listener);
      state.listener = null;
      if (!state.embedded) removePopup();
    }

    function onMessage(event) {
      // Only the Link iframe we opened, at the link token's origin, is trusted.
      if (!state.iframe || event.source !== state.iframe.contentWindow || event.origin !== state.origin) return;
      var data = event.data;
      if (!data || typeof data !== 'object' || typeof data.type !== 'string') return;
      switch (data.type) {
        case 'loaded':
          send({ type: 'meshSDKSpecs', payload: { platform: 'web', version: VERSION, origin: global.location.origin } });
          if (options.accessTokens) send({ type: 'frontAccessTokens', payload: options.accessTokens });
          call('onEvent', { type: 'pageLoaded' });
          break;
        case 'brokerageAccountAccessToken':
          call('onEvent', { type: 'integrationConnected', payload: { accessToken: data.payload } });
          call('onIntegrationConnected', { accessToken: data.payload });
          break;
        case 'delayedAuthentication':
          call('onEvent', { type: 'integrationConnected', payload: { delayedAuth: data.payload } });
          call('onIntegrationConnected', { delayedAuth: data.payload });
          break;
        case 'transferFinished':
          call('onEvent', { type: 'transferCompleted', payload: data.payload });
          call('onTransferFinished', data.payload);
          break;
        case 'close':
        case 'done':
          teardown();
          call('onExit', data.payload && data.payload.errorMessage, data.payload);
          break;
        default:
          if (EVENT_TYPES.indexOf(data.type) >= 0) call('onEvent', data);
      }
    }

    function openLink(linkToken, iframeId) {
      var url = decodeLinkToken(linkToken);
      if (!url) { call('onExit', 'Invalid link token!'); return; }
      state.embedded = options.renderType === 'embedded';
      if (state.embedded && !iframeId) { call('onExit', 'linkvault: renderType "embedded" requires an iframe id'); return; }
      var language = options.language === 'system' ? encodeURIComponent(global.navigator.language || 'en') : (options.language || 'en');
      url = appendParam(url, 'lng', language);
      if (options.displayFiatCurrency) url = appendParam(url, 'fiatCur', options.displayFiatCurrency);
      if (options.theme) url = appendParam(url, 'th', options.theme);
      if (state.embedded) url = appendParam(url, 'rt', 'embedded');
      if (state.listener) global.removeEventListener('message', state.listener);
      state.origin = new URL(url).origin;
      if (iframeId) {
        state.iframe = document.getElementById(iframeId);
        if (!state.iframe) { call('onExit', 'linkvault: no iframe with id ' + iframeId); return; }
        state.iframe.src = url;
      } else {
        state.iframe = addPopup(url);
      }
      state.listener = onMessage;
      global.addEventListener('message', state.listener);
    }

    function closeLink() {
      teardown();
      call('onExit');
    }

    function closeLinkRequested() {
      if (state.embedded) send({ type: 'closeRequested' });
      else closeLink();
    }

    return { openLink: openLink, closeLink: closeLink, closeLinkRequested: closeLinkRequested };
  }

  global.LinkvaultLink = { createLink: createLink, version: VERSION };
})(typeof window !== 'undefined' ? window : this);
