/* Checkpoint's panel inside MLflow's UI (injected into MLflow's index page by the gateway).
 *
 * 1. A governed call from MLflow's UI is answered 403 with X-Checkpoint-New-Request: the
 *    address of a pre-filled promote-request form. Follow it (once, however many parallel
 *    calls were refused). Every other answer is handed to MLflow untouched. A refused stage
 *    transition takes along the comment typed in MLflow's "Stage transition" dialog, which
 *    MLflow's own call never sends: it becomes the form's description (?description=).
 * 2. A "Promote requests" control with the open requests of the model in view (each with
 *    its checks, its approvals and whether it awaits the viewer), refreshed with conditional
 *    GETs on focus, on navigation and every minute while visible. It docks in the free space
 *    of MLflow's left sidebar, where it covers nothing; without one it floats bottom right.
 * 3. A marker on each version of the model in view that an open request would promote.
 *
 * No framework, no build step. DOM is built with createElement/textContent only: titles are
 * user-typed. It lives outside React's #root and mounts itself again if removed.
 */
(function () {
  'use strict';
  if (window.__checkpointPanel) return;
  window.__checkpointPanel = true;

  var HEADER = 'X-Checkpoint-New-Request';
  var SUMMARY = '/checkpoint/api/v1/summary';
  var REQUESTS = '/checkpoint/requests';
  var INTERVAL = 60000;
  var MIN_GAP = 2000;
  var doc = document;
  var leaving = false;

  // -- 1. follow a governed refusal to the promote-request form ----------------------

  // Only Checkpoint's own form, on this origin: a header or body from anywhere else (an MLflow
  // answer, an artifact, another app behind the same proxy) must not send the user elsewhere.
  function follow(url) {
    if (leaving || !url || typeof url !== 'string') return;
    var target;
    try {
      target = new URL(url, window.location.href);
    } catch (e) {
      return;
    }
    if (target.origin !== window.location.origin || target.pathname.indexOf('/checkpoint/requests/') !== 0) return;
    var comment = transitionComment(target);
    if (comment) target.searchParams.set('description', comment);
    leaving = true;
    window.location.assign(target.href);
  }

  // MLflow's stage-transition dialog (mlflow.model_registry.stage_transition_modal_v2) has a
  // "Comment" box whose text its transition call leaves out. Remember what is typed there; the
  // box itself, when still in the page, is the truth (MLflow empties it each time the dialog opens).
  var COMMENT_ID = 'mlflow.model_registry.stage_transition_modal_v2.comment';
  var COMMENT_MAX = 4000;  // the form's link stays a link
  var COMMENT_FRESH = 10 * 60 * 1000;
  var typed = { text: '', at: 0 };
  doc.addEventListener('input', function (event) {
    var box = event.target;
    if (box && box.id === COMMENT_ID) {
      typed.text = String(box.value || '');
      typed.at = Date.now();
    }
  }, true);

  function changeKind(target) {
    var token = target.searchParams.get('change') || '';
    try {
      var padded = token.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((token.length + 3) % 4);
      var change = JSON.parse(atob(padded));
      return change && typeof change.kind === 'string' ? change.kind : null;
    } catch (e) {
      return null;
    }
  }

  function transitionComment(target) {
    if (target.pathname !== '/checkpoint/requests/new' || changeKind(target) !== 'transition') return '';
    var box = doc.getElementById(COMMENT_ID);
    var text = box ? String(box.value || '') : (Date.now() - typed.at < COMMENT_FRESH ? typed.text : '');
    return text.trim().slice(0, COMMENT_MAX);
  }

  function inspect(response) {
    if (!response || response.status !== 403 || leaving) return;
    var url = response.headers.get(HEADER);
    if (url) return follow(url);
    if ((response.headers.get('Content-Type') || '').indexOf('json') < 0) return;
    response.clone().json().then(function (body) {
      var cp = body && body.checkpoint;
      if (cp && cp.action === 'new_request') follow(cp.url);
    }, function () {});
  }

  var nativeFetch = window.fetch;
  if (typeof nativeFetch === 'function') {
    window.fetch = function checkpointFetch() {
      return nativeFetch.apply(window, arguments).then(function (response) {
        try {
          inspect(response);
        } catch (e) { /* never break MLflow's call */ }
        return response;
      });
    };
  }

  var XHR = window.XMLHttpRequest;
  if (XHR && XHR.prototype && XHR.prototype.send) {
    var nativeSend = XHR.prototype.send;
    var onXhrLoad = function () {
      if (this.status !== 403) return;
      var url = null;
      try {
        url = this.getResponseHeader(HEADER);
      } catch (e) { /* header not readable */ }
      follow(url);
    };
    XHR.prototype.send = function () {
      try {
        this.addEventListener('load', onXhrLoad);
      } catch (e) { /* not ours to break */ }
      return nativeSend.apply(this, arguments);
    };
  }

  // -- 2. the floating control and its panel --------------------------------------------

  function modelInView() {
    var hash = window.location.hash || '';
    var m = /^#\/models\/([^/?#]+)/.exec(hash);
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]);
    } catch (e) {
      return m[1];
    }
  }

  // The version page in view (#/models/NAME/versions/N), for "compare with champion".
  function versionInView() {
    var m = /^#\/models\/[^/?#]+\/versions\/([^/?#]+)/.exec(window.location.hash || '');
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]);
    } catch (e) {
      return m[1];
    }
  }

  function el(tag, cls, text) {
    var node = doc.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = String(text);
    return node;
  }

  function link(href, text, cls) {
    var a = el('a', cls, text);
    a.href = href;
    return a;
  }

  var root = el('div', 'cp-panel-root');
  root.setAttribute('data-checkpoint', 'panel');
  var toggle = el('button', 'cp-panel-toggle');
  toggle.type = 'button';
  toggle.setAttribute('aria-expanded', 'false');
  toggle.setAttribute('aria-controls', 'cp-panel-body');
  var toggleLabel = el('span', 'cp-panel-label', 'Promote requests');
  var badge = el('span', 'cp-panel-count', '…');
  toggle.appendChild(toggleLabel);
  toggle.appendChild(badge);
  var mine = el('span', 'cp-panel-mine', '');  // "2 for you": what waits for the viewer's review
  mine.hidden = true;
  toggle.appendChild(mine);
  var here = el('span', 'cp-panel-here', '');  // "v3 in review": the version in view has an open request
  here.hidden = true;
  toggle.appendChild(here);
  var body = el('section', 'cp-panel-body');
  body.id = 'cp-panel-body';
  body.hidden = true;
  body.setAttribute('aria-label', 'Promote requests');
  root.appendChild(body);
  root.appendChild(toggle);

  var state = { url: null, etag: null, data: null, error: null, inflight: false, again: false, last: 0 };

  var rendered = null;

  function setOpen(open) {
    body.hidden = !open;
    rendered = null;
    toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    root.classList.toggle('cp-panel-open', open);
    if (open) {
      render();
      refresh(false);
    }
  }

  toggle.addEventListener('click', function () {
    setOpen(body.hidden);
  });
  root.addEventListener('keydown', function (event) {
    if (event.key === 'Escape' && !body.hidden) {
      setOpen(false);
      toggle.focus();
    }
  });

  function describeTarget(target) {
    var parts = String(target || '').split(':');
    var kind = parts.shift();
    var value = parts.join(':');
    if (kind === 'stage') return value;
    if (kind === 'alias') return '@' + value;
    if (kind === 'model') return 'into ' + value;
    if (kind === 'tag') return 'tag ' + value;
    return String(target || '');
  }

  // -- what the panel says of one request --------------------------------------------------

  // The version of the model in view that a request acts on. A copy into another model
  // (target "model:...") names its source's version, not one of this model's: no marker.
  function ownVersion(item) {
    return item.version && String(item.target || '').indexOf('model:') !== 0 ? item.version : null;
  }

  function requestsFor(data, version) {
    return (data.requests || []).filter(function (item) { return ownVersion(item) === version; });
  }

  // "2 of 3 checks passing · 1 failing: auc-gate", "0 of 1 approvals · awaiting bob", "awaiting your review".
  function facts(item) {
    var row = el('div', 'cp-panel-facts');
    var checks = item.checks || { total: 0, passing: 0, failing: [], pending: [] };
    if (checks.total) {
      var failing = checks.failing || [];
      var pending = checks.pending || [];
      var text = checks.passing + ' of ' + checks.total + ' checks passing';
      var cls = 'cp-panel-fact-good';
      if (failing.length) {
        text += ' · ' + failing.length + ' failing: ' + failing.join(', ');
        cls = 'cp-panel-fact-bad';
      } else if (pending.length) {
        text += ' · ' + pending.length + ' pending: ' + pending.join(', ');
        cls = 'cp-panel-fact-wait';
      }
      row.appendChild(el('span', 'cp-panel-fact ' + cls, text));
    }
    var approvals = item.approvals;
    if (approvals) {
      var said = approvals.count + ' of ' + approvals.required + ' approvals';
      if (approvals.awaited && approvals.awaited.length) said += ' · awaiting ' + approvals.awaited.join(', ');
      row.appendChild(el('span', 'cp-panel-fact cp-panel-fact-approvals', said));
    }
    if (item.awaiting_me) row.appendChild(el('span', 'cp-panel-fact cp-panel-fact-you', 'awaiting your review'));
    return row;
  }

  // -- 3. a marker on the versions an open request would promote ---------------------------

  var MARK = 'data-cp-review';
  var ROW_MARK = 'data-cp-review-row';

  // MLflow's own links to a version (the versions table, the version page's links): the link
  // gets "in review #5" beside it and its table row a tint. Attributes only, on elements MLflow
  // renders: React leaves attributes it does not manage alone, and re-marks after each render.
  function markVersions(model, data) {
    var wanted = {};
    if (model && data) {
      (data.requests || []).forEach(function (item) {
        var own = ownVersion(item);
        if (own) (wanted[own] = wanted[own] || []).push('#' + item.id);
      });
    }
    var marked = [];
    var links = doc.querySelectorAll('a[href*="/versions/"]');
    for (var i = 0; i < links.length; i++) {
      var a = links[i];
      if (root.contains(a)) continue;
      var m = /#\/models\/([^/?#]+)\/versions\/([^/?#]+)$/.exec(a.getAttribute('href') || '');
      var name = null;
      try { name = m ? decodeURIComponent(m[1]) : null; } catch (e) { name = null; }
      var ids = name === model && m ? wanted[m[2]] : null;
      if (!ids) continue;
      var text = 'in review ' + ids.join(', ');
      if (a.getAttribute(MARK) !== text) a.setAttribute(MARK, text);
      marked.push(a);
      var row = a.closest ? a.closest('tr, [role="row"]') : null;
      if (row) {
        if (row.getAttribute(ROW_MARK) !== text) row.setAttribute(ROW_MARK, text);
        marked.push(row);
      }
    }
    var stale = doc.querySelectorAll('[' + MARK + '], [' + ROW_MARK + ']');
    for (var j = 0; j < stale.length; j++) {
      if (marked.indexOf(stale[j]) < 0) {
        stale[j].removeAttribute(MARK);
        stale[j].removeAttribute(ROW_MARK);
      }
    }
  }

  function render() {
    var model = modelInView();
    var data = state.data && state.data.model === model ? state.data : null;
    var count = data ? (model ? data.open_for_model : data.open) : null;
    var failed = count == null && !!state.error;
    badge.textContent = count == null ? (failed ? '!' : '…') : String(count);
    root.classList.toggle('cp-panel-has-open', !!count);
    root.classList.toggle('cp-panel-failed', failed);
    var waiting = state.data ? Number(state.data.awaiting_me) || 0 : 0;
    var waitingText = waiting + (state.data && state.data.awaiting_me_more ? '+' : '') + ' for you';
    mine.textContent = waiting ? waitingText : '';
    mine.hidden = !waiting;
    root.classList.toggle('cp-panel-for-you', !!waiting);
    var version = versionInView();
    var inView = data && version ? requestsFor(data, version) : [];
    here.textContent = inView.length ? 'v' + version + ' in review' : '';
    here.hidden = !inView.length;
    var label = 'Promote requests: ' + (count == null ? (failed ? 'unavailable' : 'loading') : count + ' open') +
      (model ? ' for ' + model : '') + (waiting ? ', ' + waitingText.replace('for you', 'waiting for your review') : '') +
      (inView.length ? ', version ' + version + ' has an open request' : '');
    toggle.setAttribute('aria-label', label);
    toggle.title = label;
    markVersions(model, data);
    if (body.hidden) return;
    var key = JSON.stringify([model, version, data, state.error && !data ? state.error : null]);
    if (key === rendered && body.firstChild) return;  // keep focus and scroll when nothing changed
    rendered = key;
    while (body.firstChild) body.removeChild(body.firstChild);
    var head = el('div', 'cp-panel-head');
    head.appendChild(el('h2', 'cp-panel-title', model ? 'Promote requests · ' + model : 'Promote requests'));
    var close = el('button', 'cp-panel-close', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Close');
    close.addEventListener('click', function () {
      setOpen(false);
      toggle.focus();
    });
    head.appendChild(close);
    body.appendChild(head);

    if (state.error && !data) {
      body.appendChild(el('p', 'cp-panel-note cp-panel-error', 'Checkpoint could not be reached (' + state.error + ').'));
    } else if (!data) {
      body.appendChild(el('p', 'cp-panel-note', 'Loading…'));
    } else if (!model) {
      body.appendChild(el('p', 'cp-panel-note', data.open + ' open in all models. Open a model to see its requests.'));
    } else if (!data.requests || !data.requests.length) {
      body.appendChild(el('p', 'cp-panel-note', 'No open promote requests for this model.'));
    } else {
      var list = el('ul', 'cp-panel-list');
      data.requests.forEach(function (item) {
        var li = el('li', 'cp-panel-item' + (version && ownVersion(item) === version ? ' cp-panel-item-here' : ''));
        var a = link(REQUESTS + '/' + encodeURIComponent(item.id), item.title || ('Request #' + item.id), 'cp-panel-link');
        li.appendChild(a);
        var meta = '#' + item.id + ' · ' + (item.version ? 'v' + item.version + ' → ' : '') +
          describeTarget(item.target) + ' · ' + item.author;
        li.appendChild(el('span', 'cp-panel-meta', meta));
        li.appendChild(facts(item));
        list.appendChild(li);
      });
      body.appendChild(list);
      if (data.open_for_model > data.requests.length) {
        body.appendChild(el('p', 'cp-panel-note', 'Showing ' + data.requests.length + ' of ' + data.open_for_model + '.'));
      }
    }
    var foot = el('div', 'cp-panel-foot');
    if (model) {
      foot.appendChild(link(withWorkspace(REQUESTS + '?state=all&model=' + encodeURIComponent(model)), 'All requests for this model', 'cp-panel-more'));
      foot.appendChild(link(withWorkspace('/checkpoint/models/' + encodeURIComponent(model) + '/history'), 'History', 'cp-panel-more'));
      foot.appendChild(link(withWorkspace('/checkpoint/models/' + encodeURIComponent(model) + '/timeline'), 'Timeline', 'cp-panel-more'));
      // Checkpoint's diff of the version in view (the latest on a model's page) against @champion.
      var compare = '/checkpoint/models/' + encodeURIComponent(model) + '/compare?a=%40champion&b=' + encodeURIComponent(version || 'latest');
      foot.appendChild(link(withWorkspace(compare), version ? 'Compare v' + version + ' with champion' : 'Compare latest with champion', 'cp-panel-more cp-panel-compare'));
    }
    foot.appendChild(link(REQUESTS, 'All promote requests', 'cp-panel-more cp-panel-all'));
    body.appendChild(foot);
  }

  // MLflow's UI keeps the workspace it works in here and sends it as X-MLFLOW-WORKSPACE;
  // the panel asks about the model of that name in that workspace ('' = the default one).
  function workspaceInView() {
    var name = '';
    try { name = (window.localStorage.getItem('mlflow.activeWorkspace') || '').trim(); } catch (e) { name = ''; }
    return /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) && name !== 'default' ? name : '';
  }

  function withWorkspace(url) {
    var ws = workspaceInView();
    return ws ? url + (url.indexOf('?') < 0 ? '?' : '&') + 'workspace=' + encodeURIComponent(ws) : url;
  }

  function refresh(force) {
    if (typeof nativeFetch !== 'function' || doc.visibilityState === 'hidden') return;
    var model = modelInView();
    var url = model ? withWorkspace(SUMMARY + '?model=' + encodeURIComponent(model)) : SUMMARY;
    var now = Date.now();
    if (state.inflight) {
      state.again = true;
      return;
    }
    if (!force && url === state.url && now - state.last < MIN_GAP) return;
    state.inflight = true;
    state.last = now;
    var headers = { Accept: 'application/json' };
    if (url === state.url && state.etag) headers['If-None-Match'] = state.etag;
    nativeFetch.call(window, url, { headers: headers, cache: 'no-store', credentials: 'same-origin' })
      .then(function (response) {
        if (response.status === 304) return null;
        if (!response.ok) throw new Error('HTTP ' + response.status);
        var etag = response.headers.get('ETag');
        return response.json().then(function (data) {
          state.url = url;
          state.etag = etag;
          state.data = data;
        });
      })
      .then(function () {
        state.error = null;
      }, function (err) {
        state.error = (err && err.message) || 'network error';
        if (state.url !== url) state.data = null;
      })
      .then(function () {
        state.inflight = false;
        render();
        if (state.again) {
          state.again = false;
          if (modelInView() !== model) refresh(true);
        }
      });
  }

  // MLflow's left sidebar: an <aside> at the left edge, (nearly) as tall as the window.
  function sidebar() {
    var side = doc.querySelector('aside');
    if (!side || root.contains(side)) return null;
    var box = side.getBoundingClientRect();
    if (box.left > 1 || box.width < 32 || box.width > 320 || box.height < window.innerHeight * 0.8) return null;
    return side;
  }

  // The tallest free stretch between the sidebar's own controls, if at least ``need`` high.
  function freeSpace(side, need) {
    var boxes = [].slice.call(side.querySelectorAll('a, button, input, select, [role="button"]'))
      .map(function (node) { return node.getBoundingClientRect(); })
      .filter(function (box) { return box.width > 0 && box.height > 0; })
      .sort(function (a, b) { return a.top - b.top; });
    var best = null;
    var reach = side.getBoundingClientRect().top;
    boxes.forEach(function (box) {
      var size = box.top - reach;
      if (size >= need && (!best || size > best.size)) best = { bottom: box.top, size: size };
      reach = Math.max(reach, box.bottom);
    });
    return best;
  }

  // Docked: in the sidebar's free space, just above its bottom links, so the closed control
  // covers nothing of the page at any width (a narrow, collapsed sidebar gets the count alone).
  // Floating, bottom right, clear of MLflow's assistant side panel, when there is no room there.
  var watched = null;
  function place() {
    var side = sidebar();
    if (side && side !== watched && window.ResizeObserver) {  // collapsed or expanded: place again
      watched = side;
      new ResizeObserver(schedule).observe(side);
    }
    var box = side ? side.getBoundingClientRect() : null;
    var compact = !!box && box.width < 120;
    root.classList.toggle('cp-panel-compact', compact);  // first: the toggle's height depends on it
    var space = side ? freeSpace(side, toggle.offsetHeight + 16) : null;
    root.classList.toggle('cp-panel-docked', !!space);
    if (space) {
      var inset = compact ? 4 : 8;
      root.style.left = Math.round(box.left + inset) + 'px';
      root.style.right = 'auto';
      root.style.bottom = Math.round(window.innerHeight - space.bottom + 8) + 'px';
      toggle.style.maxWidth = compact ? '' : Math.round(box.width - 2 * inset) + 'px';
      return;
    }
    root.classList.remove('cp-panel-compact');
    root.style.left = '';
    root.style.bottom = '';
    toggle.style.maxWidth = '';
    var assistant = doc.querySelector('[data-assistant-ui]');
    var right = 16;
    if (assistant) {
      var panel = assistant.getBoundingClientRect();
      if (panel.width > 0 && panel.height > 0 && panel.left > window.innerWidth / 2) {
        right = Math.max(16, Math.round(window.innerWidth - panel.left + 16));
      }
    }
    root.style.right = right + 'px';
  }

  var placing = null;
  function schedule() {
    if (placing) return;
    placing = setTimeout(function () {
      placing = null;
      mount();
      place();
      var model = modelInView();
      markVersions(model, state.data && state.data.model === model ? state.data : null);
    }, 200);
  }

  function mount() {
    if (!doc.body) return;
    if (!root.isConnected) doc.body.appendChild(root);
  }

  function start() {
    mount();
    place();
    render();
    refresh(true);
    if (window.MutationObserver) {
      new MutationObserver(schedule).observe(doc.body, { childList: true, subtree: true });
    }
    window.addEventListener('resize', schedule);
    window.addEventListener('hashchange', function () {
      render();
      schedule();
      refresh(true);
    });

    window.addEventListener('focus', function () {
      refresh(false);
    });
    doc.addEventListener('visibilitychange', function () {
      if (doc.visibilityState === 'visible') refresh(false);
    });
    setInterval(function () {
      if (doc.visibilityState === 'visible') refresh(true);
    }, INTERVAL);
  }

  if (doc.readyState === 'loading') doc.addEventListener('DOMContentLoaded', start);
  else start();
})();
