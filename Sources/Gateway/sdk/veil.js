/*! veil.js 1.0.0: consent-first browsing capture for a Veil gateway. No dependencies. */
(function () {
  'use strict';
  var VERSION = '1.0.0';
  var STORE = 'veil';          // localStorage: {id, recorded} while the person has granted something
  var DECLINED = 'veil.declined'; // localStorage: '1' once a refusal or withdrawal was recorded (no identifier)
  var script = document.currentScript;
  var attr = function (name) { return script ? script.getAttribute('data-' + name) : null; };
  var cfg = {
    endpoint: attr('endpoint') || (script && script.src ? new URL(script.src).origin : ''),
    key: attr('key'),
    notice: attr('notice') || '',
    jurisdiction: attr('jurisdiction') || '',
    subject: attr('subject'),
    proof: attr('proof'),
    flushMs: 5000
  };
  var choice = null;        // {personalization, marketing} from the shop's banner; null until it calls consent()
  var queue = [];
  var ready = null;         // a promise: the current subject's choice is recorded; events wait for it
  var allowed = null;       // what `ready` settled to: null while pending
  var pending = null;       // the person whose choice is being recorded
  var started = Date.now();
  var gpc = navigator.globalPrivacyControl === true;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE) || 'null'); } catch (e) { return null; }
  }
  function save(state) {
    try { state ? localStorage.setItem(STORE, JSON.stringify(state)) : localStorage.removeItem(STORE); } catch (e) { /* storage off */ }
  }
  function declined(value) {
    try {
      if (value === undefined) return localStorage.getItem(DECLINED) === '1';
      value ? localStorage.setItem(DECLINED, '1') : localStorage.removeItem(DECLINED);
    } catch (e) { return false; }
  }
  function randomID() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return 'anon-' + Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join('');
  }
  function url(path, proof) {
    var u = cfg.endpoint + path + '?key=' + encodeURIComponent(cfg.key || '');
    return proof ? u + '&proof=' + encodeURIComponent(proof) : u;
  }
  // The person as the shop knows them when signed in (with the shop's proof), else the stored random id.
  function who(create) {
    if (cfg.subject) return {subject: cfg.subject, proof: cfg.proof};
    var state = load();
    if (state && state.id) return {subject: state.id, proof: null};
    if (!create) return null;
    return {subject: randomID(), proof: null};
  }
  // text/plain and the key in the URL keep every request "simple": no preflight, and a beacon can carry it.
  function post(path, body, proof, beacon) {
    var text = JSON.stringify(body);
    if (beacon && navigator.sendBeacon && navigator.sendBeacon(url(path, proof), new Blob([text], {type: 'text/plain'}))) {
      return Promise.resolve(true);
    }
    return fetch(url(path, proof), {method: 'POST', mode: 'cors', keepalive: true, credentials: 'omit', referrerPolicy: 'no-referrer',
                                    headers: {'Content-Type': 'text/plain'}, body: text})
      .then(function (r) { return r.ok; }, function () { return false; });
  }
  function record(person, purpose, granted) {
    var body = {subject: person.subject, purpose: purpose, granted: granted, method: 'banner',
                notice_version: cfg.notice, jurisdiction: cfg.jurisdiction};
    return post('/v1/consents', body, person.proof, false);
  }
  function recordGPC(person) {
    return post('/v1/consents', {subject: person.subject, notice_version: cfg.notice, gpc: true}, person.proof, false);
  }

  // Brings what the gateway holds in line with the banner's choice for the current person.
  function sync() {
    if (!cfg.key && choice) { if (window.console) console.warn('veil.js: no key; add data-key to the script tag'); return; }
    if (!choice) return;
    var state = load();
    var personalization = choice.personalization === true;
    var marketing = choice.marketing === true && !gpc;
    if (!personalization && !marketing) {
      queue = [];
      // A grant still on its way counts as made: its withdrawal is sent after it, so the ledger ends withdrawn.
      var leaving = who(false) || pending;
      var had = (state && state.recorded) || pending;
      var before = allowed === null ? ready : null;
      save(null);                     // the random id goes at once; nothing is sent any more
      ready = null;
      allowed = null;
      pending = null;
      if (!leaving || (!had && declined())) return;
      if (!had && !cfg.subject) return; // a random id never used speaks for nobody: nothing to record
      declined(true);
      (before || Promise.resolve()).then(function () {
        record(leaving, 'personalization', false);
        gpc ? recordGPC(leaving) : record(leaving, 'marketing', false);
      });
      return;
    }
    var person = cfg.subject ? who(false) : (who(false) || pending || who(true));
    var recorded = state && state.recorded;
    var wanted = {subject: person.subject, personalization: personalization, marketing: marketing, gpc: gpc,
                  notice: cfg.notice, jurisdiction: cfg.jurisdiction};
    // Recorded once, not on every page; again when the choice, the person, the notice or the law changes.
    if (recorded && Object.keys(wanted).every(function (k) { return recorded[k] === wanted[k]; })) {
      if (!ready) { ready = Promise.resolve(true); allowed = true; }
      return;
    }
    declined(false);
    var steps = [record(person, 'personalization', personalization)];
    steps.push(gpc ? recordGPC(person) : record(person, 'marketing', marketing));
    allowed = null;
    pending = person;
    var mine = ready = Promise.all(steps).then(function (results) {
      if (ready !== mine) return false; // withdrawn or changed meanwhile: keep nothing of this one
      pending = null;
      var ok = results.every(Boolean);
      if (ok) save({id: cfg.subject ? (state && state.id) || null : person.subject, recorded: wanted});
      allowed = ok && personalization;
      return allowed;
    });
  }

  function enqueue(event) {
    if (!choice || choice.personalization !== true || !ready) return;
    queue.push(event);
  }
  // Sends what is queued once the choice is recorded; `beacon` when the page is going away. Synchronous once the
  // recording has settled: a page being hidden gives no later turn to a promise's callback.
  function flush(beacon) {
    if (!ready || queue.length === 0) return;
    if (allowed === null) { ready.then(function () { flush(beacon); }); return; }
    var batch = queue;
    queue = [];
    var person = who(false);
    if (!allowed || !person || !choice || choice.personalization !== true) return;
    batch.forEach(function (e) { e.subject = person.subject; });
    post('/v1/events', {events: batch}, person.proof, beacon);
  }
  function eventID() { return randomID().slice(5); }
  function base(kind) { return {id: eventID(), kind: kind, subject: '', timestamp: new Date().toISOString(), source: 'web'}; }

  // The shop's markup is read when needed: the script may run in <head>, before the body exists.
  function one(selector) { return document.querySelector(selector); }
  function all(selector) { return Array.prototype.slice.call(document.querySelectorAll(selector)); }

  // What one item page measures: time while visible, deepest scroll. The item id comes from the shop's markup.
  var visibleSince = document.visibilityState === 'visible' ? Date.now() : null;
  var dwell = 0, depth = 0, viewID = eventID(), viewSent = false;
  function measureScroll() {
    var doc = document.documentElement;
    var seen = (window.scrollY || doc.scrollTop) + window.innerHeight;
    var total = Math.max(doc.scrollHeight, 1);
    depth = Math.max(depth, Math.min(1, seen / total));
  }
  function pageViewDone() {
    var itemNode = one('[data-veil-item]');
    if (!itemNode || viewSent) return;
    if (visibleSince !== null) { dwell += Date.now() - visibleSince; visibleSince = null; }
    measureScroll();
    viewSent = true;
    var e = base('page_view');
    e.id = viewID;
    e.timestamp = new Date(started).toISOString();
    e.item = itemNode.getAttribute('data-veil-item');
    e.dwell_ms = Math.round(dwell);
    e.scroll_depth = Math.round(depth * 100) / 100;
    enqueue(e);
  }
  window.addEventListener('scroll', measureScroll, {passive: true});
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'hidden') { pageViewDone(); flush(true); }
    else if (visibleSince === null) { visibleSince = Date.now(); }
  });
  window.addEventListener('pagehide', function () { pageViewDone(); flush(true); });

  // Searches and clicks on their results, add-to-cart: all from data attributes the shop sets.
  function searchEvent(searchNode, clicked) {
    var e = base('search');
    e.query = searchNode.getAttribute('data-veil-search');
    e.shown = all('[data-veil-result]').map(function (n) { return n.getAttribute('data-veil-result'); });
    if (clicked) e.clicked = [clicked];
    return e;
  }
  document.addEventListener('click', function (ev) {
    var target = ev.target && ev.target.closest ? ev.target : null;
    if (!target) return;
    var result = target.closest('[data-veil-result]');
    var searchNode = one('[data-veil-search]');
    if (result && searchNode) {
      enqueue(searchEvent(searchNode, {item: result.getAttribute('data-veil-result'), position: all('[data-veil-result]').indexOf(result) + 1}));
    }
    var cart = target.closest('[data-veil-add-to-cart]');
    if (cart) {
      var e = base('feedback');
      e.item = cart.getAttribute('data-veil-add-to-cart');
      e.signal = 'add_to_cart';
      enqueue(e);
      flush(false);
    }
  }, true);

  var searched = false;
  setInterval(function () { flush(false); }, cfg.flushMs);

  window.veil = {
    version: VERSION,
    /** The banner's answer, e.g. veil.consent({personalization: true, marketing: false}). Call it on every page. */
    consent: function (c) {
      choice = {personalization: !!(c && c.personalization), marketing: !!(c && c.marketing)};
      sync();
      if (choice.personalization && !searched) {
        // The search a results page shows, once per page view, when the body is there.
        var noteSearch = function () {
          var searchNode = one('[data-veil-search]');
          if (searchNode && !searched) { searched = true; enqueue(searchEvent(searchNode, null)); }
        };
        document.readyState === 'loading' ? document.addEventListener('DOMContentLoaded', noteSearch) : noteSearch();
      }
    },
    /** The signed-in person: the shop's id and the proof its server computed (EXPIRES.HMAC-SHA256 under the key's secret). */
    identify: function (subject, proof) { cfg.subject = subject; cfg.proof = proof; sync(); },
    /** Options: endpoint, key, notice, jurisdiction (the same as the script tag's data attributes). */
    init: function (o) { for (var k in o) if (Object.prototype.hasOwnProperty.call(o, k)) cfg[k] = o[k]; },
    /** Sends what is queued now (normally when the page is hidden, and every few seconds). */
    flush: function () { flush(false); }
  };
})();
