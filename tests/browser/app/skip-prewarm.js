// Must run before the SDK module: the SDK would otherwise prewarm an iframe from web.meshconnect.com.
window.meshLinkShouldSkipPrewarm = true;
