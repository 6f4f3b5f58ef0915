// The xend-vfb console page: noVNC on the WebSocket /websockify, with the one-time token
// of the URL's fragment (`xend-vfb console-url DOM`).  The page's state is in the
// bar's data-state: connecting, password, connected, disconnected or error.
import RFB from '/novnc/core/rfb.js';

const bar = document.getElementById('bar');
const status = document.getElementById('status');
const form = document.getElementById('password');
const secret = document.getElementById('secret');
const ASK = 'Ask for a new link with: xend-vfb console-url DOM';

function show(state, text) {
    bar.dataset.state = state;
    status.textContent = text;
}

const token = window.location.hash.slice(1);
// The token is used once: keep it out of the address bar and the history.
window.history.replaceState(null, '', window.location.pathname);
// A new link opened over this page changes only the fragment: start again with it.
window.addEventListener('hashchange', () => window.location.reload());

if (!/^[A-Za-z0-9_-]{16,}$/.test(token)) {
    show('error', 'This page needs a console link with its token. ' + ASK);
} else {
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const rfb = new RFB(document.getElementById('screen'),
                        `${scheme}//${window.location.host}/websockify`,
                        { wsProtocols: ['binary', 'xend-vfb.token.' + token] });
    let connected = false;
    show('connecting', 'Connecting…');
    rfb.addEventListener('connect', () => {
        connected = true;
        form.hidden = true;
        show('connected', 'Connected' + (rfb.desktopName ? ': ' + rfb.desktopName : ''));
        rfb.focus();
    });
    rfb.addEventListener('desktopname', (e) => {
        if (connected) {
            show('connected', 'Connected: ' + e.detail.name);
        }
    });
    rfb.addEventListener('credentialsrequired', () => {
        form.hidden = false;
        show('password', 'The display asks for its VNC password.');
        secret.focus();
    });
    form.addEventListener('submit', (e) => {
        e.preventDefault();
        form.hidden = true;
        rfb.sendCredentials({ password: secret.value });
        secret.value = '';
        show('connecting', 'Connecting…');
    });
    rfb.addEventListener('securityfailure', (e) => {
        show('error', 'The display refused the connection: ' + (e.detail.reason || 'wrong password'));
    });
    rfb.addEventListener('disconnect', () => {
        if (connected) {
            show('disconnected', 'Disconnected. ' + ASK);
        } else if (bar.dataset.state !== 'error') {
            show('error', 'This console link is not valid: it was used already, has expired, '
                 + 'or its display is gone. ' + ASK);
        }
    });
}
