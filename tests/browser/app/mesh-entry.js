// The test app's bundle: the real @meshconnect/web-link-sdk, exposed to the page as window.MeshLink.
import './skip-prewarm.js';
import { createLink } from '@meshconnect/web-link-sdk';

window.MeshLink = { createLink };
