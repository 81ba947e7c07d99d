// Presence browser client: one dependency-free ES module (docs/clients.md).
//
//   import { Presence } from "http://127.0.0.1:8081/presence.js";
//   const presence = new Presence({
//     url: "wss://presence.example.com/",
//     getTicket: async () => (await (await fetch("/presence-ticket", {method: "POST"})).json()).ticket,
//   });
//   presence.on("state", (s) => console.log(s.state, s.code, s.reason));
//   presence.subscribe("room:lobby", (data) => console.log(data), {presence: true});
//   presence.on("recovery-failed", ({channel}) => reloadStateOf(channel));
//   presence.connect();
//
// A reconnect first uses the resume token of the last welcome (no call to
// getTicket), and recovers what each history channel published meanwhile.

/** Close codes after which the client does not reconnect by itself. */
export function shouldRetry(code) {
  if (code === 1000) return false; // the server ended the session on purpose
  if (code === 1008) return false; // policy violation
  if (code === 4403) return false; // ticket issued for another IP address (a resume token's: see _attach)
  if (code >= 4000 && code <= 4099) return false; // kicked by the application
  return true; // 1001 going away, 1006, 1011-1013, 4401, 4408, 4503, ...
}

const DEFAULTS = {
  minDelay: 1000, // first reconnect delay, ms (then doubled, with jitter)
  maxDelay: 30000, // cap of the reconnect delay, ms
  connectTimeout: 10000, // from asking for a ticket to the welcome, ms
  pingTimeout: 5000, // a liveness ping unanswered this long: reconnect, ms
};

// The transports, and when to try WebSocket again after falling back to
// Server-Sent Events (docs/clients.md, "Transports").
const TRANSPORT_DEFAULTS = {
  transports: ["websocket", "sse"], // the order tried, and what is allowed
  wsRetryAfter: 600000, // after a fallback, the first again at the next full reconnect past this, ms
};

export class Presence {
  constructor(options) {
    if (!options || !options.url || typeof options.getTicket !== "function") {
      throw new TypeError("Presence needs {url, getTicket}");
    }
    new URL(options.url); // throws now on a URL that could never work
    this.options = Object.assign({}, DEFAULTS, TRANSPORT_DEFAULTS, options);
    this._chooseTransports();
    this.state = { state: "closed", code: null, reason: "not connected", willRetry: false };
    this.session = null;
    this.account = null;
    this.attempt = 0; // reconnects since the last welcome
    this._ws = null;
    this._timer = null; // reconnect delay, connect timeout
    this._stopped = true;
    this._listeners = {}; // event -> Set of functions
    this._channels = new Map(); // channel -> {handler, presence, epoch, offset, recovered}
    this._resume = null; // the last welcome's resume token, until used or refused
    this._pending = []; // {type, channel, id, resolve, reject}
    this._pingId = 0;
    this._wake = () => this._onWake();
  }

  // ------------------------------------------------------------ events

  /** on("state" | "welcome" | "subscribed" | "recovery-failed" | "message" |
   *  "join" | "leave" | "error", fn): returns a function that removes fn. */
  on(event, fn) {
    (this._listeners[event] ||= new Set()).add(fn);
    return () => this._listeners[event].delete(fn);
  }

  _emit(event, value) {
    for (const fn of this._listeners[event] || []) {
      try { fn(value); } catch (error) { console.error(error); }
    }
  }

  _setState(state, code = null, reason = "", willRetry = false, retryIn = null) {
    this.state = { state, code, reason, willRetry, retryIn };
    this._emit("state", this.state);
  }

  // -------------------------------------------------------- connection

  /** Start (or restart after close()): connect, and stay connected. */
  connect() {
    if (this._stopped) this._watchWakes(true);
    this._stopped = false;
    this.attempt = 0;
    if (!this._ws && this.state.state !== "connecting") this._open();
    return this;
  }

  /** Close for good: no reconnect until connect() is called again. */
  close(code = 1000, reason = "closed by the client") {
    this._stopped = true;
    this._resume = null; // e.g. a logout: the next connect() needs a ticket
    this._watchWakes(false);
    clearTimeout(this._timer);
    const ws = this._ws;
    this._detach();
    if (ws) ws.close(code, reason); // 1000 or 3000-4999, as browsers require
    this._closed(code, reason, false);
  }

  // A tab waking from sleep, a page restored from the back/forward cache, the
  // network back: check the connection (or stop waiting to reconnect).
  _watchWakes(on) {
    if (typeof window === "undefined") return;
    for (const name of ["online", "pageshow", "visibilitychange"]) {
      if (on) window.addEventListener(name, this._wake);
      else window.removeEventListener(name, this._wake);
    }
  }

  async _open() {
    clearTimeout(this._timer);
    this._setState("connecting");
    const generation = (this._generation = (this._generation || 0) + 1);
    this._timer = setTimeout(() => this._drop(1006, "connect timeout"), this.options.connectTimeout);
    if (this._resume) {
      // The last session's resume token: a new session without asking the
      // backend. Sent in the first message, not the URL (kept out of logs;
      // and a refusal is a close code the page sees, not a failed handshake;
      // an SSESocket puts it in its stream's URL, and reads the refusal's
      // status as the same close code).
      const token = this._resume;
      const ws = this._attach(new URL(this.options.url), true);
      ws.onopen = () => ws.send(JSON.stringify({ type: "auth", resume: token }));
      return;
    }
    let ticket;
    try {
      ticket = await this.options.getTicket();
    } catch (error) {
      if (generation === this._generation) this._closed(null, "getTicket failed: " + error, true);
      return;
    }
    if (generation !== this._generation || this._stopped) return;
    if (ticket == null) {
      // The application has no ticket to give (e.g. logged out): stop.
      this._stopped = true;
      this._closed(null, "no ticket", false);
      return;
    }
    const url = new URL(this.options.url);
    url.searchParams.set("ticket", ticket);
    this._attach(url, false);
  }

  _attach(url, resuming) {
    const WebSocketClass = this.options.WebSocket || WebSocket;
    const ws = (this._ws = new WebSocketClass(url.href));
    ws.onmessage = (event) => this._onMessage(event.data);
    ws.onclose = (event) => {
      if (ws !== this._ws) return;
      const welcomed = this.state.state === "open";
      this._detach();
      if (resuming && !welcomed && (event.code === 4401 || event.code === 4403)) {
        // The token was refused (used, expired, another address): ask the
        // backend for a ticket now.
        this._resume = null;
        clearTimeout(this._timer);
        this._setState("closed", event.code, event.reason, true, 0);
        this._timer = setTimeout(() => this._open(), 0);
        return;
      }
      this._closed(event.code, event.reason, true);
    };
    return ws;
  }

  /** Give up on the current socket without waiting for its closing
   *  handshake (a dead connection may never finish one), and reconnect. */
  _drop(code, reason) {
    const ws = this._ws;
    this._detach();
    if (ws) { try { ws.close(1000, reason); } catch (_) { /* already closed */ } }
    this._closed(code, reason, true);
  }

  _detach() {
    this._generation = (this._generation || 0) + 1; // forget a getTicket() in flight
    if (this._ws) {
      this._ws.onmessage = this._ws.onclose = this._ws.onopen = null;
      this._ws = null;
    }
    for (const request of this._pending.splice(0)) {
      request.reject(new Error("connection closed"));
    }
  }

  _closed(code, reason, mayRetry) {
    if (mayRetry && this._fallBack()) return;
    clearTimeout(this._timer);
    this.session = null;
    const retry = mayRetry && !this._stopped && (code === null || shouldRetry(code));
    if (!retry) {
      this._stopped = true;
      this._watchWakes(false);
      this._setState("closed", code, reason, false);
      return;
    }
    const base = Math.min(this.options.maxDelay, this.options.minDelay * 2 ** this.attempt);
    this.attempt += 1;
    // "Equal jitter": between half the delay and all of it, so that the
    // clients of a restarted server do not all come back at once.
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    this._timer = setTimeout(() => this._open(), delay);
    this._setState("closed", code, reason, true, delay);
  }

  _onWake() {
    if (typeof document !== "undefined" && document.visibilityState === "hidden") return;
    if (this.state.state === "open") {
      this.ping().catch(() => {}); // a failed ping drops the connection
    } else if (this.state.state === "closed" && this.state.willRetry) {
      this._open(); // back online or awake: do not wait out the backoff
    }
  }

  /** An application-level round trip: resolves with the time it took (ms);
   *  unanswered within pingTimeout, the connection is dropped and renewed. */
  ping() {
    const started = performance.now();
    const id = ++this._pingId;
    const answer = this._request({ type: "ping", id }, "pong", null, id);
    const timer = setTimeout(() => this._drop(1006, "ping timeout"), this.options.pingTimeout);
    return answer.then(
      () => { clearTimeout(timer); return performance.now() - started; },
      (error) => { clearTimeout(timer); throw error; });
  }

  // -------------------------------------------------------- transports

  /** Every socket an attempt opens is made by options.WebSocket: from here
   *  on, by this chooser, which makes a WebSocket (the one given, or the
   *  browser's) or an SSESocket. */
  _chooseTransports() {
    const WebSocketClass = this.options.WebSocket || globalThis.WebSocket;
    const presence = this;
    this.transport = null; // "websocket" or "sse" once a socket was made
    this._fellBackAt = null; // when the second transport last worked where the first had failed
    this._fallingBack = false; // the next socket is of the second, after the first failed
    this.options.WebSocket = function ChosenSocket(url) {
      return presence._socket(new URL(url), WebSocketClass);
    };
  }

  /** The socket for this attempt, of the first transport of
   *  options.transports (a WebSocket, or an SSESocket: the same session
   *  over Server-Sent Events and POSTs), or of the second once the first
   *  failed on this page, until wsRetryAfter has passed. `url` is the
   *  WebSocket URL (with its ticket, if the credential is not sent in the
   *  first message). */
  _socket(url, WebSocketClass) {
    const [first, second] = this.options.transports;
    const fallingBack = this._fallingBack;
    this._fallingBack = false;
    const fellBack = second && (fallingBack || (this._fellBackAt != null &&
      Date.now() - this._fellBackAt < this.options.wsRetryAfter));
    this._setTransport(fellBack ? second : first);
    this._connectingOver = this.transport;
    // Remembered once the second transport worked: a first one that failed
    // because the server was down (the second then fails too) is tried
    // first again at the next attempt.
    const worked = () => { if (fallingBack) this._fellBackAt = Date.now(); };
    if (this.transport === "websocket") {
      const ws = new WebSocketClass(url.href);
      if (fallingBack && ws.addEventListener) {
        const welcome = (event) => {
          if (!String(event.data).includes('"welcome"')) return;
          ws.removeEventListener("message", welcome);
          worked();
        };
        ws.addEventListener("message", welcome);
      }
      return ws;
    }
    const stream = new URL(url.href);
    stream.protocol = url.protocol === "wss:" ? "https:" : "http:";
    stream.pathname = url.pathname.replace(/[^/]*$/, "sse");
    const socket = new SSESocket(stream.href, this.options.fetch || fetch.bind(globalThis));
    socket.onwelcome = worked;
    return socket;
  }

  _setTransport(transport) {
    if (this.transport === transport) return;
    this.transport = transport;
    this._emit("transport", transport);
  }

  /** The first transport did not open, or brought no welcome within
   *  connectTimeout: try the second at once, with a fresh credential
   *  (remembered once it brings its welcome). */
  _fallBack() {
    const [first, second] = this.options.transports;
    if (!second || this._connectingOver !== first || this._stopped) return false;
    if (this.state.state !== "connecting") return false;
    this._connectingOver = null;
    this._fallingBack = true;
    this._open();
    return true;
  }

  // ---------------------------------------------------------- messages

  _send(message) {
    if (!this._ws || this.state.state !== "open") return false;
    this._ws.send(JSON.stringify(message));
    return true;
  }

  _request(message, answerType, channel = null, id = null) {
    return new Promise((resolve, reject) => {
      if (!this._send(message)) { reject(new Error("not connected")); return; }
      this._pending.push({ type: answerType, request: message.type, channel, id, resolve, reject });
    });
  }

  _settle(predicate, settle) {
    const index = this._pending.findIndex(predicate);
    if (index < 0) return;
    const [request] = this._pending.splice(index, 1);
    settle(request);
  }

  _onMessage(text) {
    let message;
    try { message = JSON.parse(text); } catch (_) { return; }
    const { type, channel } = message;
    if (type === "welcome") {
      clearTimeout(this._timer);
      this.session = message.session;
      this.account = message.account;
      this._resume = message.resume || null; // the next reconnect's, single-use
      this.attempt = 0;
      this._setState("open");
      this._emit("welcome", message);
      for (const [name, subscription] of this._channels) this._sendSubscribe(name, subscription);
    } else if (type === "message") {
      const subscription = this._channels.get(channel);
      if (subscription && typeof message.offset === "number") subscription.offset = message.offset;
      if (subscription && subscription.handler) {
        try { subscription.handler(message.data, message); } catch (error) { console.error(error); }
      }
      this._emit("message", message);
    } else if (type === "join" || type === "leave" || type === "whisper") {
      // join and leave: a session's (presence: true), or an account's
      // (presence: "accounts": no session field). whisper: another client's.
      this._emit(type, message);
    } else if (type === "error") {
      this._settle((r) => r.request === message.request && (channel === undefined || r.channel === channel),
        (r) => { const error = new Error(message.reason); error.detail = message; r.reject(error); });
      this._emit("error", message);
    } else if (type === "subscribed") {
      this._subscribed(message);
      this._settle((r) => r.type === type && r.channel === channel, (r) => r.resolve(message));
      this._emit("subscribed", message);
    } else if (type === "pong") {
      this._settle((r) => r.type === type && r.id === message.id, (r) => r.resolve(message));
    } else if (message.by === "server") {
      // unsubscribed by the backend (POST /unsubscribe): no request of ours.
      if (this._channels.get(channel)) this._channels.delete(channel);
      this._emit(type, message);
    } else {
      // unsubscribed, published, members: answers, in order per channel.
      this._settle((r) => r.type === type && r.channel === channel, (r) => r.resolve(message));
    }
  }

  // A history channel's subscription: its epoch, and the offset of the last
  // publication seen (recovered from after a reconnect).
  _subscribed(message) {
    const subscription = this._channels.get(message.channel);
    if (!subscription || message.epoch === undefined) return;
    const previous = { epoch: subscription.epoch, offset: subscription.offset };
    subscription.recovered = message.recovered === undefined ? null : message.recovered;
    subscription.epoch = message.epoch;
    // Recovered: the missed publications follow, each advancing the offset.
    if (message.recovered !== true) subscription.offset = message.offset;
    if (message.recovered === false) {
      this._emit("recovery-failed", { channel: message.channel, epoch: message.epoch,
        offset: message.offset, previous });
    }
  }

  /** What the client knows of a subscription: {channel, epoch, offset,
   *  recovered} (epoch and offset null for a channel without history;
   *  recovered: true or false after a reconnect's recovery, else null). */
  subscription(channel) {
    const s = this._channels.get(channel);
    if (!s) return null;
    return { channel, epoch: s.epoch, offset: s.offset, recovered: s.recovered };
  }

  _sendSubscribe(channel, subscription) {
    const message = { type: "subscribe", channel, presence: subscription.presence };
    if (subscription.epoch != null && subscription.offset != null) {
      message.recover = { epoch: subscription.epoch, offset: subscription.offset };
    }
    return this._request(message, "subscribed", channel).then(subscription.resolve, (error) => {
      if (!error.detail) return; // disconnected: sent again after the next welcome
      // Refused (e.g. not allowed by the ticket): not asked again.
      if (this._channels.get(channel) === subscription) this._channels.delete(channel);
      subscription.reject(error);
    });
  }

  /** Receive the messages of `channel` (handler(data, message)), now and
   *  after every reconnect. {presence: true}: also its join and leave
   *  events (on("join"), on("leave")), one per session; {presence:
   *  "accounts"}: one per person, the leave only once its last session is
   *  gone for the server's --leave-delay (a reload is no leave). Resolves
   *  once subscribed. */
  subscribe(channel, handler, { presence = false } = {}) {
    let resolve, reject;
    const done = new Promise((res, rej) => { resolve = res; reject = rej; });
    done.catch(() => {}); // a refusal is also emitted as "error"
    const subscription = { handler, presence: presence === "accounts" ? presence : !!presence,
      resolve, reject,
      epoch: null, offset: null, recovered: null };
    this._channels.set(channel, subscription);
    if (this.state.state === "open") this._sendSubscribe(channel, subscription);
    return done;
  }

  unsubscribe(channel) {
    if (!this._channels.delete(channel)) return Promise.resolve(null);
    if (this.state.state !== "open") return Promise.resolve(null);
    return this._request({ type: "unsubscribe", channel }, "unsubscribed", channel);
  }

  /** Send `data` on `channel` to the application's backends (they decide
   *  what to broadcast). Resolves with the stream entry's id. */
  publish(channel, data) {
    return this._request({ type: "publish", channel, data }, "published", channel)
      .then((answer) => answer.id);
  }

  /** Who is subscribed to `channel`, cluster-wide, one entry per account:
   *  [{account, info, sessions: [{session, node, protocol, rtt_ms,
   *  last_seen_ms, stale}]}] (info: the ticket's). */
  members(channel) {
    return this._request({ type: "members", channel }, "members", channel)
      .then((answer) => answer.members);
  }

  /** Send `data` to every other subscriber of `channel`, on every node,
   *  not stored (a typing indicator, a cursor): on("whisper") there. Needs
   *  the ticket's "whisper" right; a refusal comes as an "error" event.
   *  False when not connected. */
  whisper(channel, data) {
    return !!this._send({ type: "whisper", channel, data });
  }
}

/** What a refused stream's status means, as the close code a refused
 *  session gets after a WebSocket handshake (docs/close-codes.md). */
const STREAM_REFUSALS = { 401: 4401, 403: 4403, 429: 4429, 503: 4503 };

/** One Presence session over Server-Sent Events (downstream) and POSTs
 *  (upstream), shaped like the WebSocket the client otherwise uses: send(),
 *  close(), onopen, onmessage, onclose (docs/protocol.md, "SSE"). The
 *  stream is read with fetch, not EventSource: a refusal's status says why
 *  (a used resume token is 4401, not a lost connection), and nothing
 *  reconnects behind the client's back with a used ticket. Messages sent in
 *  one turn go out as one POST, and POSTs go one after another, in order. */
export class SSESocket {
  constructor(url, fetchFunction) {
    this.url = url;
    this.onopen = this.onmessage = this.onclose = this.onwelcome = null;
    this._fetch = fetchFunction;
    this._abort = null; // the stream's AbortController once asked for
    this._send = null; // the welcome's path, as a URL
    this._outbox = [];
    this._posting = Promise.resolve();
    this._ended = false;
    const params = new URL(url).searchParams;
    if (params.has("ticket") || params.has("resume")) {
      this._stream(url);
    } else {
      // The credential comes in the first message, once "open" (as over
      // WebSocket); the stream is asked for with it in its URL.
      setTimeout(() => { if (!this._ended && this.onopen) this.onopen(); }, 0);
    }
  }

  async _stream(url) {
    const abort = (this._abort = new AbortController());
    this._watchPageHide(true);
    let response;
    try {
      response = await this._fetch(url, {
        headers: { Accept: "text/event-stream" }, cache: "no-store", signal: abort.signal,
      });
      if (response.status !== 200) {
        const reason = (await response.text()).trim();
        this._end(STREAM_REFUSALS[response.status] || 1006,
          reason || `the event stream was answered ${response.status}`);
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this._ended) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let end;
        while (!this._ended && (end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          this._event(block);
        }
      }
    } catch (_) { /* failed, or aborted by _end */ }
    this._end(1006, "the event stream ended without a close event");
  }

  /** One event block: comments (the padding, heartbeats) and ids skipped. */
  _event(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("data:")) data.push(line.slice(line[5] === " " ? 6 : 5));
      else if (line.startsWith("event:")) name = line.slice(6).trim();
    }
    if (!data.length) return;
    const text = data.join("\n");
    if (name === "message") {
      if (!this._send) {
        try {
          const message = JSON.parse(text);
          if (message.type === "welcome" && message.send) {
            this._send = new URL(message.send, this.url).href;
            if (this.onwelcome) this.onwelcome();
          }
        } catch (_) { /* not the welcome */ }
      }
      if (this.onmessage) this.onmessage({ data: text });
    } else if (name === "ping") {
      // The server's heartbeat: answered, so that it measures the round trip.
      try { this.send(JSON.stringify({ type: "pong", id: JSON.parse(text).id })); } catch (_) { /* ignored */ }
    } else if (name === "close") {
      let message = {};
      try { message = JSON.parse(text); } catch (_) { /* no code */ }
      this._end(message.code ?? 1005, message.reason || "");
    }
  }

  send(text) {
    if (this._ended) return;
    if (!this._abort) {
      // The first message, {"type": "auth", ...}: its credential opens the stream.
      let credential = {};
      try { credential = JSON.parse(text); } catch (_) { /* not one */ }
      const url = new URL(this.url);
      for (const kind of ["ticket", "resume"]) {
        if (typeof credential[kind] === "string") url.searchParams.set(kind, credential[kind]);
      }
      this._stream(url.href);
      return;
    }
    if (!this._send) return;
    this._outbox.push(text);
    if (this._outbox.length === 1) this._posting = this._posting.then(() => this._flush());
  }

  _flush() {
    const batch = this._outbox.splice(0);
    if (!batch.length || !this._send) return undefined;
    // text/plain: a "simple" request, so no CORS preflight precedes it.
    return this._fetch(this._send, {
      method: "POST", body: "[" + batch.join(",") + "]", headers: { "Content-Type": "text/plain" },
    }).then((response) => {
      if (response.status !== 202) this._end(1006, `a POST was answered ${response.status}`);
    }, () => this._end(1006, "a POST failed"));
  }

  close(code = 1000, reason = "") {
    if (this._ended) return;
    if (!this._send) { this._end(code, reason, false); return; }
    // Said by POST, after what was sent before it, and only then is the
    // stream let go: a stream ending first would be a client that vanished
    // (1006), and the close's POST would find no session.
    this._outbox.push(JSON.stringify({ type: "close", code, reason }));
    this._ended = true;
    this._watchPageHide(false);
    const abort = this._abort;
    const letGo = () => abort.abort();
    this._posting = this._posting.then(() => this._flush()).then(letGo, letGo);
    setTimeout(letGo, 5000);
  }

  /** A tab closed or navigated away: say goodbye by beacon, which the
   *  browser still sends (1001, as it would close a WebSocket), rather
   *  than vanish. */
  _watchPageHide(on) {
    if (typeof window === "undefined" || typeof navigator === "undefined" || !navigator.sendBeacon) return;
    if (!this._pageHide) {
      this._pageHide = (event) => {
        if (event.persisted || this._ended || !this._send) return; // kept in the back/forward cache
        navigator.sendBeacon(this._send, JSON.stringify({ type: "close", code: 1001, reason: "page closed" }));
      };
    }
    if (on) window.addEventListener("pagehide", this._pageHide);
    else window.removeEventListener("pagehide", this._pageHide);
  }

  _end(code, reason, tell = true) {
    this._watchPageHide(false);
    if (this._ended) return;
    this._ended = true;
    if (this._abort) this._abort.abort();
    if (tell && this.onclose) this.onclose({ code, reason });
  }
}
