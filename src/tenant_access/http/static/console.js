/*
 * The tenant-access console: the Azure portal's "Management API" blade for this server.
 *
 * Everything shown comes from the public API, called with the bearer token the user pasted; the
 * token lives in sessionStorage (this tab only) and nowhere else. Keys are fetched (listSecrets,
 * which the server audits) only when the user asks to see one or to sign with one, kept in memory
 * only while shown, and forgotten on hide, regeneration, sign-out and after two minutes.
 *
 * The page is built with textContent and DOM calls only (no HTML strings): with a token in the page,
 * no server-supplied text may ever be parsed as markup. Both wire formats are understood (the default
 * seed envelope and --api-style azure), so the console works whichever the server speaks.
 */
"use strict";

(function () {
  const API_VERSION = "2024-05-01";
  const TOKEN_KEY = "tenant-access.console.token";
  const ANONYMOUS_KEY = "tenant-access.console.anonymous";
  const SCOPE_KEY = "tenant-access.console.scope";
  const KEY_LIFETIME_MS = 2 * 60 * 1000;
  const HISTORY_SHOWN = 8;
  const AUDIT_PAGE = 1000;
  const MASK = "\u2022".repeat(40);
  // Where the API lives: the console is served at <root>/console, so a proxy prefix carries over.
  const ROOT = location.pathname.replace(/\/console\/?$/, "");

  const CONFIGS = [
    { name: "access", title: "Management API", sub: "Direct management REST API. Its keys sign shared access signatures." },
    { name: "gitAccess", title: "Git", sub: "Configuration repository access." },
  ];
  const ROTATIONS = {
    "access.regenerate_primary_key": "primary",
    "access.regenerate_secondary_key": "secondary",
    "access.git_regenerate_primary_key": "primary",
    "access.git_regenerate_secondary_key": "secondary",
  };
  const HISTORY_OPERATIONS = [...Object.keys(ROTATIONS), "access.create", "access.update", "services.create_or_update"];
  const EXTRA_OPERATIONS = ["access.list_secrets"];

  const state = {
    token: "",
    anonymous: false,
    claims: null,
    style: "",
    subscription: "",
    resourceGroup: "",
    services: [],
    selected: null, // {name, id, ...}
    configs: {}, // name -> normalized configuration
    secrets: {}, // name -> {primary, secondary}; only while a key is shown
    revealed: {}, // name -> {primary: bool, secondary: bool}
    timers: {},
    audit: null, // normalized records of the selected service, or an ApiError
    historyAll: false,
    historyExpanded: {},
    places: [], // [{subscription, resource_group}] with services, from the sign-in check
    events: null, // [{subscription, deliveries}] of the selected service, or an ApiError
  };

  const $ = (id) => document.getElementById(id);

  // -- small DOM helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function part(root, role) {
    return root.querySelector(`[data-role="${role}"]`);
  }

  function toast(message, kind, detail) {
    const node = el("div", { class: `toast toast-${kind || "info"}`, role: kind === "error" ? "alert" : "status" },
      el("span", { class: "toast-text", text: message }));
    if (detail) node.append(el("span", { class: "toast-detail", text: detail }));
    $("toasts").append(node);
    setTimeout(() => node.classList.add("leaving"), kind === "error" ? 9000 : 4500);
    setTimeout(() => node.remove(), kind === "error" ? 9400 : 4900);
  }

  function showError(error, what) {
    const message = error instanceof ApiError ? error.message : String(error && error.message || error);
    const detail = error instanceof ApiError && error.requestId ? `request ${error.requestId}` : "";
    toast(what ? `${what}: ${message}` : message, "error", detail);
  }

  async function busy(button, work) {
    if (button) {
      button.disabled = true;
      button.classList.add("busy");
    }
    try {
      return await work();
    } finally {
      if (button) {
        button.disabled = false;
        button.classList.remove("busy");
      }
    }
  }

  function confirmDialog(title, body, action) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-body").textContent = body;
    $("confirm-ok").textContent = action;
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-ok").removeEventListener("click", ok);
        $("confirm-cancel").removeEventListener("click", cancel);
        dialog.removeEventListener("cancel", cancel);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const ok = () => done(true);
      const cancel = (event) => {
        if (event) event.preventDefault();
        done(false);
      };
      $("confirm-ok").addEventListener("click", ok);
      $("confirm-cancel").addEventListener("click", cancel);
      dialog.addEventListener("cancel", cancel);
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (_) {
        // fall through to the selection-based copy
      }
    }
    const area = el("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (_) {
      copied = false;
    }
    area.remove();
    return copied;
  }

  // -- time ----------------------------------------------------------------------------------------

  function parseTime(text) {
    if (!text) return null;
    // Round-trip format has seven fractional digits; Date wants at most three.
    const date = new Date(String(text).replace(/(\.\d{3})\d+/, "$1"));
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function formatTime(date) {
    if (!date) return "";
    const iso = date.toISOString();
    return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
  }

  function relative(date) {
    if (!date) return "";
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    const future = seconds < 0;
    const s = Math.abs(seconds);
    if (s < 5) return "just now";
    const [value, unit] = s < 60 ? [s, "second"] : s < 3600 ? [Math.round(s / 60), "minute"]
      : s < 86400 ? [Math.round(s / 3600), "hour"] : [Math.round(s / 86400), "day"];
    const text = `${value} ${unit}${value === 1 ? "" : "s"}`;
    return future ? `in ${text}` : `${text} ago`;
  }

  function shortId(id) {
    return id && id.length > 12 ? `${id.slice(0, 6)}\u2026${id.slice(-4)}` : (id || "");
  }

  // -- the API -------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, requestId) {
      super(message);
      this.status = status;
      this.code = code;
      this.requestId = requestId;
    }
  }

  function authorization(token) {
    const text = token.trim();
    if (/^(bearer|sharedaccesssignature)\s/i.test(text)) return text;
    if (/^uid=[^&]*&ex=[^&]*&sn=/i.test(text)) return `SharedAccessSignature ${text}`;
    return `Bearer ${text}`;
  }

  function unwrap(payload) {
    if (payload && typeof payload === "object" && "success" in payload && "data" in payload) return payload.data;
    if (payload && typeof payload === "object" && Array.isArray(payload.value)) return payload.value;
    return payload;
  }

  function noteServer(response) {
    const mode = response.headers.get("x-tenant-access-auth");
    const style = response.headers.get("x-ms-request-id") ? "Azure wire format" : "seed wire format";
    const badge = $("server-mode");
    const text = mode ? `${style} \u00b7 auth ${mode.split(" ")[0]}` : style;
    if (badge.textContent !== text) {
      badge.textContent = text;
      badge.title = mode ? `The server runs with --auth ${mode}` : "The server checks every credential";
      badge.classList.toggle("warn", Boolean(mode));
      badge.hidden = false;
    }
    state.style = style;
  }

  async function api(method, path, options) {
    const opts = options || {};
    const url = new URL(ROOT + path, location.origin);
    if (opts.versioned !== false) url.searchParams.set("api-version", API_VERSION);
    for (const [name, value] of Object.entries(opts.query || {})) url.searchParams.set(name, value);
    const headers = { Accept: "application/json", ...(opts.headers || {}) };
    // opts.token: a token being checked at sign-in, not yet the session's.
    const token = opts.token !== undefined ? opts.token : state.token;
    if (token) headers.Authorization = authorization(token);
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (error instanceof TypeError && /header|ISO-8859-1|non ISO/i.test(error.message)) {
        throw new ApiError(0, "BAD_TOKEN", "The token contains characters that cannot be sent in a header.", "");
      }
      throw new ApiError(0, "NETWORK", "The server could not be reached.", "");
    }
    noteServer(response);
    const requestId = response.headers.get("x-request-id") || response.headers.get("x-ms-request-id") || "";
    const text = await response.text();
    let payload = null;
    if (text) {
      try {
        payload = JSON.parse(text);
      } catch (_) {
        payload = null;
      }
    }
    if (!response.ok) {
      const error = (payload && payload.error) || {};
      const failure = new ApiError(response.status, error.code || String(response.status),
        error.message || response.statusText || `The server answered ${response.status}.`, requestId);
      if (response.status === 401 && opts.token === undefined) signedOut(failure);
      throw failure;
    }
    return { status: response.status, etag: response.headers.get("etag"), data: unwrap(payload), requestId };
  }

  // Both wire formats, reduced to what the console shows.

  function normService(s) {
    const props = s.properties || {};
    return {
      name: s.name,
      id: s.id || "",
      location: s.location || "",
      sku: s.sku_name || (s.sku && s.sku.name) || "",
      capacity: s.sku_capacity !== undefined ? s.sku_capacity : (s.sku && s.sku.capacity),
      publisher: s.publisher_name || props.publisherName || "",
      created: parseTime(s.created_at || props.createdAtUtc || (s.systemData && s.systemData.createdAt)),
    };
  }

  function normConfig(c, etag) {
    const props = c.properties || {};
    const version = (slot) => (c[`${slot}_key_version_id`]
      ? { id: c[`${slot}_key_version_id`], created: parseTime(c[`${slot}_key_created_at`]) } : null);
    return {
      name: c.name,
      principalId: c.principal_id !== undefined ? c.principal_id : (props.principalId || ""),
      enabled: Boolean(c.enabled !== undefined ? c.enabled : props.enabled),
      etag: etag || (c.etag ? `"${c.etag}"` : ""),
      primary: version("primary"),
      secondary: version("secondary"),
      updated: parseTime(c.updated_at),
    };
  }

  function normSecrets(s) {
    return {
      primary: s.primary_key !== undefined ? s.primary_key : s.primaryKey,
      secondary: s.secondary_key !== undefined ? s.secondary_key : s.secondaryKey,
    };
  }

  function normAudit(r) {
    const when = String(r.created_at || r.at || "");
    return {
      id: r.id,
      at: parseTime(when),
      // Newest first to the microsecond (Date keeps milliseconds): "…:26Z", "…:26.119643Z" and
      // "…:26.1196430Z" all become "…:26.1196430Z", which sorts as text; the id breaks exact ties.
      order: when.replace(/(?:\.(\d+))?Z$/, (_, digits) => `.${(digits || "").padEnd(7, "0")}Z`) + String(r.id),
      operation: r.operation,
      outcome: r.outcome,
      status: r.status,
      principal: r.principal,
      role: r.role,
      target: String(r.target || ""),
      old: r.old_version_id !== undefined ? r.old_version_id : r.oldVersionId,
      new: r.new_version_id !== undefined ? r.new_version_id : r.newVersionId,
      detail: r.detail,
      // A summary of refused requests stands for this many (one address, one minute).
      count: Number.isInteger(r.count) && r.count > 0 ? r.count : 1,
      requestId: r.request_id || r.requestId || "",
    };
  }

  // Event subscriptions and their deliveries (our extension), both wire formats.

  function normSubscription(s) {
    const p = s.properties || s;
    const destination = typeof p.destination === "string" ? p.destination
      : ((p.destination && p.destination.properties) || {}).endpointUrl || "";
    return {
      name: s.name,
      id: s.id || "",
      destination,
      eventTypes: p.event_types || p.eventTypes || [],
      schema: p.schema || p.eventDeliverySchema || "",
      signed: Boolean(p.signed),
      metricsLabel: p.metrics_label || p.metricsLabel || "",
      created: parseTime(p.created_at || p.createdAt),
    };
  }

  function normDeliveries(d) {
    const p = d.properties || d;
    const pick = (snake, camel) => (p[snake] !== undefined ? p[snake] : p[camel]);
    const item = (u) => ({
      eventId: u.event_id || u.eventId || "",
      type: u.event_type || u.eventType || "",
      attempts: u.attempts,
      next: parseTime(u.next_attempt_at || u.nextAttemptAt),
      first: parseTime(u.first_attempt_at || u.firstAttemptAt),
      error: u.reason || u.last_error || u.lastError || "",
    });
    return {
      delivered: pick("delivered", "delivered"),
      pending: pick("pending", "pending") || 0,
      retrying: pick("retrying", "retrying") || 0,
      dead: pick("dead_lettered", "deadLettered") || 0,
      oldest: parseTime(pick("oldest_undelivered_at", "oldestUndeliveredAt")),
      retries: (pick("retries", "retries") || []).map(item),
      deadLetters: (pick("dead_letters", "deadLetters") || []).map(item),
      command: pick("redeliver_command", "redeliverCommand") || "",
    };
  }

  function providerPath() {
    return `/subscriptions/${encodeURIComponent(state.subscription)}/resourceGroups/` +
      `${encodeURIComponent(state.resourceGroup)}/providers/Microsoft.ApiManagement`;
  }

  function servicePath(name) {
    return `${providerPath()}/service/${encodeURIComponent(name)}`;
  }

  function configPath(config) {
    return `${servicePath(state.selected.name)}/tenant/${config}`;
  }

  // -- session -------------------------------------------------------------------------------------

  function decodeClaims(token) {
    const parts = token.trim().replace(/^bearer\s+/i, "").split(".");
    if (parts.length !== 3) return null;
    try {
      const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      const json = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "="));
      const claims = JSON.parse(decodeURIComponent(Array.from(json, (c) =>
        `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join("")));
      return claims && typeof claims === "object" ? claims : null;
    } catch (_) {
      return null;
    }
  }

  function describeSession() {
    if (state.anonymous) return "No token";
    const c = state.claims;
    if (!c) {
      const uid = /uid=([^&]*)/i.exec(state.token);
      return uid ? `SAS \u00b7 ${uid[1]}` : "Token";
    }
    const expires = c.exp ? new Date(c.exp * 1000) : null;
    const bits = [c.sub || "token", c.role || "", c.scope && c.scope !== "/" ? c.scope.split("/").pop() : ""];
    const who = bits.filter(Boolean).join(" \u00b7 ");
    return expires ? `${who} \u00b7 expires ${relative(expires)}` : who;
  }

  function startSession(token, anonymous) {
    state.token = anonymous ? "" : token;
    state.anonymous = anonymous;
    state.claims = anonymous ? null : decodeClaims(token);
    sessionStorage.setItem(TOKEN_KEY, state.token);
    sessionStorage.setItem(ANONYMOUS_KEY, anonymous ? "1" : "");
    $("who").textContent = describeSession();
    $("who").title = state.claims && state.claims.scope ? `scope ${state.claims.scope}` : "";
    $("session").hidden = false;
    $("signin").hidden = true;
    $("workspace").hidden = false;
  }

  function forgetKeys() {
    for (const timer of Object.values(state.timers)) clearTimeout(timer);
    state.timers = {};
    state.secrets = {};
    state.revealed = {};
  }

  function signedOut(error) {
    state.token = "";
    state.anonymous = false;
    state.claims = null;
    forgetKeys();
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ANONYMOUS_KEY);
    $("session").hidden = true;
    $("workspace").hidden = true;
    $("signin").hidden = false;
    $("token").value = "";
    const message = $("signin-error");
    if (error) {
      message.textContent = error.status === 401
        ? "The server refused the token (expired, not signed by a key it trusts, or not valid for this request). " +
          "Paste another one."
        : error.message;
      message.hidden = false;
    } else {
      message.hidden = true;
    }
    $("token").focus();
  }

  function isSas(token) {
    return /^(sharedaccesssignature\s+)?uid=/i.test(token.trim());
  }

  async function checkToken(token) {
    // The server's verdict before anything else: garbage is refused here with its reason, and a
    // good token brings the resource groups it can see, to fill the boxes with real values.
    // A SharedAccessSignature is valid only on its own service's routes, so it is checked there.
    if (isSas(token)) return { resource_groups: [] };
    const answer = await busy($("signin-submit"), () =>
      api("GET", "/console/session", { token, versioned: false }));
    return answer.data || {};
  }

  async function signIn(event) {
    event.preventDefault();
    const token = $("token").value.trim();
    const message = $("signin-error");
    message.hidden = true;
    if (!token) {
      message.textContent = "Paste a token, or continue without one if the server runs with --auth none.";
      message.hidden = false;
      return;
    }
    const claims = decodeClaims(token);
    if (claims && typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
      message.textContent = `This token expired ${relative(new Date(claims.exp * 1000))}. Make a new one.`;
      message.hidden = false;
      return;
    }
    let session;
    try {
      session = await checkToken(token);
    } catch (error) {
      message.textContent = error.status === 401
        ? `The server refused this token: ${error.message.replace(/\s*Send 'Authorization:.*$/, "")}`
        : error.message;
      message.hidden = false;
      return;
    }
    state.places = Array.isArray(session.resource_groups) ? session.resource_groups : [];
    $("token").value = "";
    startSession(token, false);
    restoreScope();
  }

  // -- scope and services --------------------------------------------------------------------------

  function parseScope(text) {
    // A token scope (.../providers/Microsoft.ApiManagement/service/NAME) or this page's own hash (.../service/NAME).
    const match = /^\/?subscriptions\/([^/]+)(?:\/resourceGroups\/([^/]+)(?:(?:\/providers\/Microsoft\.ApiManagement)?\/service\/([^/]+))?)?/i
      .exec(text || "");
    if (!match) return null;
    const decode = (value) => (value ? decodeURIComponent(value) : "");
    return { subscription: decode(match[1]), resourceGroup: decode(match[2]), service: decode(match[3]) };
  }

  function restoreScope() {
    const fromHash = parseScope(location.hash.replace(/^#/, ""));
    const fromToken = state.claims ? parseScope(state.claims.scope) : null;
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem(SCOPE_KEY) || "null");
    } catch (_) {
      saved = null;
    }
    const first = (state.places || [])[0];
    const found = first ? { subscription: first.subscription, resourceGroup: first.resource_group } : null;
    // The page's own address first, then a token scoped to a resource group, the last ones used,
    // a resource group the sign-in check found, and at least the token's subscription.
    const scope = fromHash || (fromToken && fromToken.resourceGroup ? fromToken : null) || saved || found ||
      fromToken || {};
    $("subscription").value = scope.subscription || "";
    $("resource-group").value = scope.resourceGroup || "";
    $("scope-hint").textContent = state.claims && state.claims.scope
      ? `Your token reaches ${state.claims.scope === "/" ? "every subscription (scope /)" : state.claims.scope}.`
      : "With serve --demo: subscription 00000000-0000-0000-0000-000000000000, resource group demo-rg.";
    if (scope.subscription && scope.resourceGroup) {
      loadServices(scope.service || "");
    } else {
      $("subscription").focus();
    }
  }

  function submitScope(event) {
    event.preventDefault();
    loadServices("");
  }

  async function loadServices(select) {
    const subscription = $("subscription").value.trim();
    const resourceGroup = $("resource-group").value.trim();
    const empty = $("services-empty");
    if (!subscription || !resourceGroup) {
      empty.textContent = "Enter a subscription id and a resource group.";
      empty.hidden = false;
      return;
    }
    state.subscription = subscription;
    state.resourceGroup = resourceGroup;
    localStorage.setItem(SCOPE_KEY, JSON.stringify({ subscription, resourceGroup }));
    const list = $("service-list");
    list.replaceChildren();
    empty.textContent = "Loading\u2026";
    empty.hidden = false;
    const tokenScope = state.claims ? parseScope(state.claims.scope) : null;
    try {
      const answer = await busy($("load-services"), () => api("GET", `${providerPath()}/service`));
      state.services = (answer.data || []).map(normService).sort((a, b) => a.name.localeCompare(b.name));
    } catch (error) {
      if (error.status === 401) return;
      if (error.status === 403 && tokenScope && tokenScope.service) {
        // A service-scoped token may not list its resource group, but may open its one service.
        state.services = [{ name: tokenScope.service, id: "", location: "", sku: "", publisher: "" }];
        select = select || tokenScope.service;
      } else {
        state.services = [];
        empty.textContent = error.status === 403
          ? "Your token may not list the services of this resource group (its role or scope does not cover it)."
          : `Could not list services: ${error.message}`;
        clearDetail();
        return;
      }
    }
    renderServices();
    const wanted = select || (state.selected && state.selected.name) || "";
    const match = state.services.find((s) => s.name.toLowerCase() === wanted.toLowerCase());
    if (match) {
      selectService(match.name);
    } else {
      clearDetail();
      location.hash = `#${providerPath().replace("/providers/Microsoft.ApiManagement", "")}`;
    }
  }

  function renderServices() {
    const list = $("service-list");
    const empty = $("services-empty");
    list.replaceChildren();
    empty.hidden = state.services.length > 0;
    empty.textContent = "This resource group has no API Management services.";
    for (const service of state.services) {
      const meta = [service.sku, service.location].filter(Boolean).join(" \u00b7 ");
      const button = el("button", { type: "button", class: "service-item", "data-service": service.name },
        el("span", { class: "service-name", text: service.name }),
        meta ? el("span", { class: "service-meta", text: meta }) : null);
      if (state.selected && state.selected.name === service.name) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => selectService(service.name));
      list.append(el("li", {}, button));
    }
  }

  function clearDetail() {
    state.selected = null;
    forgetKeys();
    $("detail").replaceChildren($("placeholder") || el("div"));
    $("placeholder").hidden = false;
  }

  // -- one service ---------------------------------------------------------------------------------

  async function selectService(name) {
    forgetKeys();
    state.selected = state.services.find((s) => s.name === name) || { name };
    state.configs = {};
    state.audit = null;
    state.historyExpanded = {};
    state.events = null;
    location.hash = `#${servicePath(name).replace("/providers/Microsoft.ApiManagement", "")}`;
    for (const item of document.querySelectorAll(".service-item")) {
      if (item.dataset.service === name) item.setAttribute("aria-current", "true");
      else item.removeAttribute("aria-current");
    }
    renderDetailFrame();
    try {
      const answer = await api("GET", servicePath(name));
      state.selected = normService(answer.data);
      renderServiceHeader();
    } catch (error) {
      if (error.status !== 401) showError(error, `Could not load ${name}`);
      return;
    }
    await Promise.all([...CONFIGS.map((c) => loadConfig(c.name)), loadHistory(), loadEvents()]);
  }

  function renderDetailFrame() {
    const placeholder = $("placeholder");
    const header = el("header", { class: "card service-head", id: "service-head" },
      el("h2", { text: state.selected.name }));
    const grid = el("div", { class: "config-grid" });
    for (const config of CONFIGS) {
      const card = $("config-template").content.firstElementChild.cloneNode(true);
      card.dataset.config = config.name;
      card.querySelector(".config-title").append(config.title, " ", el("code", { text: config.name }));
      card.querySelector(".config-sub").textContent = config.sub;
      for (const label of card.querySelectorAll("label[data-for]")) {
        const id = `${config.name}-${label.dataset.for}`;
        label.htmlFor = id;
        part(card, label.dataset.for).id = id;
      }
      part(card, "sas-expiry").value = defaultExpiry();
      card.classList.add("loading");
      wireCard(card, config.name);
      grid.append(card);
    }
    const events = el("section", { class: "card events", id: "events", "aria-labelledby": "events-title" },
      el("header", { class: "events-head" },
        el("h3", { id: "events-title", text: "Event subscriptions" }),
        el("button", { type: "button", class: "btn btn-small", id: "events-refresh", text: "Refresh" })),
      el("div", { class: "subscription-list", id: "subscription-list" }),
      el("p", { class: "fine", id: "events-note", text: "Loading\u2026" }));
    events.querySelector("#events-refresh").addEventListener("click", (event) => busy(event.target, loadEvents));
    $("detail").replaceChildren(placeholder, header, grid, events);
    placeholder.hidden = true;
  }

  function renderServiceHeader() {
    const s = state.selected;
    const head = $("service-head");
    if (!head) return;
    const chips = el("div", { class: "chips" });
    for (const [label, value] of [["SKU", s.sku + (s.capacity !== undefined && s.capacity !== null ? ` (${s.capacity})` : "")],
      ["Location", s.location], ["Publisher", s.publisher], ["Created", formatTime(s.created)]]) {
      if (value) chips.append(el("span", { class: "chip" }, el("span", { class: "chip-label", text: label }), value));
    }
    head.replaceChildren(
      el("div", { class: "service-title" }, el("h2", { text: s.name }), chips),
      el("p", { class: "resource-id", text: s.id }));
  }

  function card(config) {
    return document.querySelector(`.config[data-config="${config}"]`);
  }

  async function loadConfig(config) {
    try {
      const [answer, usage] = await Promise.all([api("GET", configPath(config)), loadUsage(config)]);
      state.configs[config] = normConfig(answer.data, answer.etag);
      state.configs[config].usage = usage;
      renderConfig(config);
    } catch (error) {
      if (error.status !== 401) showError(error, `Could not load ${config}`);
    }
  }

  // Key usage (GET .../keyUsage, our extension): per slot, when the key last signed a request.
  async function loadUsage(config) {
    try {
      const answer = await api("GET", `${configPath(config)}/keyUsage`);
      const body = answer.data.properties || answer.data;
      const asOf = parseTime(body.as_of || body.asOf);
      const usage = { asOf };
      for (const k of body.keys || []) {
        usage[k.slot] = {
          lastUsed: parseTime(k.last_used_at || k.lastUsedAt),
          created: parseTime(k.created_at || k.createdAt),
          uses: k.use_count !== undefined ? k.use_count : k.useCount,
        };
      }
      return usage;
    } catch (error) {
      return null; // an older server without keyUsage: the card shows no usage
    }
  }

  function span(ms) {
    const minutes = Math.max(0, Math.floor(ms / 60000));
    if (minutes < 1) return null;
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} hour${hours === 1 ? "" : "s"}`;
    const days = Math.floor(hours / 24);
    return `${days} day${days === 1 ? "" : "s"}`;
  }

  function usageText(usage, slot) {
    const u = usage && usage[slot];
    if (!u || !usage.asOf) return "";
    if (!u.lastUsed) {
      const since = u.created ? span(usage.asOf - u.created) : null;
      return since ? `never used (${since} old)` : "never used";
    }
    const ago = span(usage.asOf - u.lastUsed);
    if (!ago) return "last used this minute";
    // A key unused for a day or more reads as "unused for", which is what decides a safe rotation.
    return usage.asOf - u.lastUsed >= 86400000 ? `unused for ${ago}` : `last used ${ago} ago`;
  }

  function renderConfig(config) {
    const root = card(config);
    const c = state.configs[config];
    if (!root || !c) return;
    root.classList.remove("loading");
    const badge = part(root, "state");
    badge.textContent = c.enabled ? "Enabled" : "Disabled";
    badge.className = `badge ${c.enabled ? "badge-on" : "badge-off"}`;
    const toggle = root.querySelector('[data-action="toggle"]');
    toggle.textContent = c.enabled ? "Disable" : "Enable";
    toggle.setAttribute("aria-label", `${c.enabled ? "Disable" : "Enable"} ${config}`);
    part(root, "principal").textContent = c.principalId;
    part(root, "etag").textContent = c.etag.replace(/^W\//, "").replace(/"/g, "");
    for (const slot of ["primary", "secondary"]) {
      const row = root.querySelector(`.key[data-slot="${slot}"]`);
      const version = c[slot];
      const used = usageText(c.usage, slot);
      part(row, "meta").textContent = version
        ? `version ${shortId(version.id)} \u00b7 ${formatTime(version.created)}${used ? ` \u00b7 ${used}` : ""}`
        : used;
      if (version) part(row, "meta").title = `key version ${version.id}`;
      const shown = Boolean(state.revealed[config] && state.revealed[config][slot] && state.secrets[config]);
      const input = part(row, "value");
      input.value = shown ? state.secrets[config][slot] : MASK;
      input.classList.toggle("masked", !shown);
      const show = row.querySelector('[data-action="show"]');
      show.textContent = shown ? "Hide" : "Show";
      show.setAttribute("aria-label", `${shown ? "Hide" : "Show"} ${slot} key`);
      row.querySelector('[data-action="copy"]').disabled = !shown;
      row.querySelector('[data-action="copy"]').title = shown ? "" : "Show the key first";
    }
    const note = part(root, "sas-note");
    note.textContent = window.TenantAccessSas && window.TenantAccessSas.available()
      ? `Signed in this browser for identifier \u201c${c.principalId}\u201d; regenerating the key revokes it.`
      : "Signing needs WebCrypto, which browsers offer only over HTTPS or on localhost.";
  }

  function wireCard(root, config) {
    root.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || button.disabled) return;
      const slotRow = button.closest(".key");
      const slot = slotRow ? slotRow.dataset.slot : null;
      const actions = {
        toggle: () => toggleEnabled(config, button),
        show: () => toggleKey(config, slot, button),
        copy: () => copyKey(config, slot),
        regenerate: () => regenerate(config, slot, button),
        sas: () => generateSas(config, root, button),
        "copy-sas": () => copySas(root),
        "history-more": () => {
          state.historyExpanded[config] = !state.historyExpanded[config];
          renderHistory(config);
        },
      };
      const action = actions[button.dataset.action];
      if (action) action();
    });
    part(root, "history-all").addEventListener("change", (event) => {
      state.historyAll = event.target.checked;
      for (const box of document.querySelectorAll('[data-role="history-all"]')) box.checked = state.historyAll;
      loadHistory();
    });
    part(root, "history-all").checked = state.historyAll;
  }

  // -- actions -------------------------------------------------------------------------------------

  async function fetchSecrets(config) {
    const answer = await api("POST", `${configPath(config)}/listSecrets`);
    return normSecrets(answer.data || {});
  }

  function scheduleForget(config) {
    clearTimeout(state.timers[config]);
    state.timers[config] = setTimeout(() => {
      delete state.secrets[config];
      delete state.revealed[config];
      renderConfig(config);
    }, KEY_LIFETIME_MS);
  }

  async function toggleKey(config, slot, button) {
    const revealed = state.revealed[config] || (state.revealed[config] = { primary: false, secondary: false });
    if (revealed[slot]) {
      revealed[slot] = false;
      if (!revealed.primary && !revealed.secondary) {
        delete state.secrets[config];
        clearTimeout(state.timers[config]);
      }
      renderConfig(config);
      return;
    }
    try {
      if (!state.secrets[config]) state.secrets[config] = await busy(button, () => fetchSecrets(config));
      revealed[slot] = true;
      scheduleForget(config);
      renderConfig(config);
    } catch (error) {
      if (error.status !== 401) showError(error, `Could not read the ${slot} key`);
    }
  }

  async function copyKey(config, slot) {
    const secrets = state.secrets[config];
    if (!secrets) return;
    const copied = await copyText(secrets[slot]);
    toast(copied ? `The ${slot} key of ${config} is on the clipboard.` : "The browser refused to copy; select the key and copy it by hand.",
      copied ? "success" : "error");
  }

  async function regenerate(config, slot, button) {
    const other = slot === "primary" ? "secondary" : "primary";
    const confirmed = await confirmDialog(
      `Regenerate the ${slot} key of ${config}?`,
      `The current ${slot} key stops working at once, and so does every shared access signature made with it. ` +
      `Clients using the ${other} key are not affected. This cannot be undone.`,
      `Regenerate ${slot} key`);
    if (!confirmed) return;
    try {
      await busy(button, () => api("POST", `${configPath(config)}/regenerate${slot === "primary" ? "Primary" : "Secondary"}Key`));
      delete state.secrets[config];
      delete state.revealed[config];
      clearTimeout(state.timers[config]);
      toast(`The ${slot} key of ${config} was regenerated.`, "success");
      await Promise.all([loadConfig(config), loadHistory()]);
    } catch (error) {
      if (error.status !== 401) showError(error, `Could not regenerate the ${slot} key`);
    }
  }

  async function toggleEnabled(config, button) {
    const current = state.configs[config];
    if (!current) return;
    const enable = !current.enabled;
    if (!enable) {
      const consequence = config === "access"
        ? "Shared access signatures of this service stop working until it is enabled again."
        : "Git access with these keys stops working until it is enabled again.";
      const confirmed = await confirmDialog(`Disable ${config}?`, consequence, `Disable ${config}`);
      if (!confirmed) return;
    }
    try {
      await busy(button, () => api("PATCH", configPath(config), {
        body: { properties: { enabled: enable } },
        headers: { "If-Match": current.etag || "*" },
      }));
      toast(`${config} is ${enable ? "enabled" : "disabled"}.`, "success");
    } catch (error) {
      if (error.status === 412) {
        toast(`${config} was changed elsewhere since it was loaded; it has been reloaded. Check it and try again.`, "error");
      } else if (error.status !== 401) {
        showError(error, `Could not ${enable ? "enable" : "disable"} ${config}`);
      }
    }
    await Promise.all([loadConfig(config), loadHistory()]);
  }

  function defaultExpiry() {
    // The portal's default: thirty days ahead, to the minute.
    const date = new Date(Date.now() + 30 * 86400 * 1000);
    return date.toISOString().slice(0, 16);
  }

  async function generateSas(config, root, button) {
    const sas = window.TenantAccessSas;
    const current = state.configs[config];
    if (!current) return;
    if (!sas || !sas.available()) {
      toast("Signing needs WebCrypto: open the console over HTTPS or on localhost.", "error");
      return;
    }
    const slot = part(root, "sas-key").value;
    const text = part(root, "sas-expiry").value;
    const expiry = text ? new Date(`${text.length === 16 ? `${text}:00` : text}Z`) : null;
    if (!expiry || Number.isNaN(expiry.getTime())) {
      toast("Choose an expiry date and time (UTC).", "error");
      return;
    }
    if (expiry.getTime() <= Date.now()) {
      toast("The expiry must be in the future.", "error");
      return;
    }
    try {
      const value = await busy(button, async () => {
        // The key is needed for a moment only: kept if it is on show, otherwise used and dropped.
        const secrets = state.secrets[config] || await fetchSecrets(config);
        return sas.makeSas(current.principalId, secrets[slot], expiry);
      });
      part(root, "sas-value").value = value;
      part(root, "sas-out").hidden = false;
    } catch (error) {
      if (error.status !== 401) showError(error, "Could not make the signature");
    }
  }

  async function copySas(root) {
    const value = part(root, "sas-value").value;
    if (!value) return;
    const copied = await copyText(value);
    toast(copied ? "The signature is on the clipboard." : "The browser refused to copy; select it and copy by hand.",
      copied ? "success" : "error");
  }

  // -- rotation history ----------------------------------------------------------------------------

  async function fetchAudit(operations) {
    const records = [];
    await Promise.all(operations.map(async (operation) => {
      for (let skip = 0, page = 0; page < 20; page += 1) {
        const answer = await api("GET", `${servicePath(state.selected.name)}/auditEvents`, {
          query: { operation, $top: String(AUDIT_PAGE), $skip: String(skip) },
        });
        const items = Array.isArray(answer.data) ? answer.data : [];
        records.push(...items.map(normAudit));
        if (items.length < AUDIT_PAGE) break;
        skip += items.length;
      }
    }));
    return records;
  }

  async function loadHistory() {
    if (!state.selected) return;
    const name = state.selected.name;
    try {
      const records = await fetchAudit(state.historyAll ? [...HISTORY_OPERATIONS, ...EXTRA_OPERATIONS] : HISTORY_OPERATIONS);
      if (!state.selected || state.selected.name !== name) return;
      state.audit = records;
    } catch (error) {
      if (error.status === 401) return;
      state.audit = error;
    }
    for (const config of CONFIGS) renderHistory(config.name);
  }

  function describeEvent(record) {
    const slot = ROTATIONS[record.operation];
    if (slot) return { kind: "rotate", title: `${slot === "primary" ? "Primary" : "Secondary"} key regenerated` };
    if (record.operation === "access.create") {
      return record.detail
        ? { kind: "rotate", title: `Key${record.detail.includes(",") ? "s" : ""} replaced (${record.detail.replace(",", ", ")})` }
        : { kind: "update", title: "Configuration replaced" };
    }
    if (record.operation === "access.update") return { kind: "update", title: "Enabled or disabled" };
    if (record.operation === "services.create_or_update") return { kind: "create", title: "Service created, first keys issued" };
    if (record.operation === "access.list_secrets") return { kind: "read", title: "Keys read" };
    return { kind: "update", title: record.operation };
  }

  function historyFor(config) {
    const serviceId = (state.selected.id || servicePath(state.selected.name)).toLowerCase();
    const target = `${serviceId}/tenant/${config}`.toLowerCase();
    return state.audit.filter((r) => {
      const t = r.target.toLowerCase();
      if (r.operation === "services.create_or_update") {
        return t === serviceId && r.detail === "created" && r.outcome === "success";
      }
      // A refused request is filed under the path it asked for (".../tenant/access/regenerate...").
      const mine = t === target || t.startsWith(`${target}/`);
      return mine && (state.historyAll || r.outcome === "success");
    }).sort((a, b) => b.order.localeCompare(a.order));
  }

  function renderHistory(config) {
    const root = card(config);
    if (!root) return;
    const list = part(root, "timeline");
    const note = part(root, "history-note");
    list.replaceChildren();
    if (state.audit instanceof ApiError) {
      note.textContent = state.audit.status === 403
        ? "The rotation history is read from the audit trail, which needs an owner token."
        : `Could not read the audit trail: ${state.audit.message}`;
      return;
    }
    if (!state.audit) {
      note.textContent = "Loading\u2026";
      return;
    }
    const events = historyFor(config);
    const shown = state.historyExpanded[config] ? events : events.slice(0, HISTORY_SHOWN);
    for (const record of shown) {
      const { kind, title } = describeEvent(record);
      const denied = record.outcome !== "success";
      const who = [record.principal, record.role && record.role !== "-" ? record.role : ""].filter(Boolean).join(", ");
      const body = el("div", { class: "event-body" },
        el("div", { class: "event-title", text: denied
          ? `Refused (${record.status})${record.count > 1 ? ` \u00d7${record.count}` : ""}: ${title.toLowerCase()}`
          : title }),
        el("div", { class: "event-meta" },
          el("time", { datetime: record.at ? record.at.toISOString() : "", title: formatTime(record.at), text: formatTime(record.at) }),
          ` \u00b7 ${relative(record.at)}${who ? ` \u00b7 by ${who}` : ""}`));
      if (record.old || record.new) {
        body.append(el("div", { class: "event-versions", title: `${record.old || ""} \u2192 ${record.new || ""}` },
          `${(record.old || "").split(",").map(shortId).join(", ")} \u2192 ${(record.new || "").split(",").map(shortId).join(", ")}`));
      }
      list.append(el("li", { class: `event event-${denied ? "denied" : kind}`, "data-operation": record.operation,
        title: record.requestId ? `request ${record.requestId}` : null }, el("span", { class: "dot", "aria-hidden": "true" }), body));
    }
    note.replaceChildren();
    if (!events.length) {
      note.textContent = "No rotations recorded yet.";
    } else if (events.length > HISTORY_SHOWN) {
      note.append(el("button", { type: "button", class: "btn btn-link", "data-action": "history-more",
        text: state.historyExpanded[config] ? "Show fewer" : `Show all ${events.length} events` }));
    }
  }

  // -- event subscriptions -------------------------------------------------------------------------

  async function loadEvents() {
    if (!state.selected) return;
    const name = state.selected.name;
    let found;
    try {
      const answer = await api("GET", `${servicePath(name)}/eventSubscriptions`);
      const subs = (Array.isArray(answer.data) ? answer.data : []).map(normSubscription);
      found = await Promise.all(subs.map(async (sub) => {
        try {
          const owed = await api("GET", `${servicePath(name)}/eventSubscriptions/${encodeURIComponent(sub.name)}/deliveries`);
          return { sub, deliveries: normDeliveries(owed.data || {}) };
        } catch (error) {
          if (error.status === 401) throw error;
          return { sub, deliveries: error };
        }
      }));
    } catch (error) {
      if (error.status === 401) return;
      found = error;
    }
    if (!state.selected || state.selected.name !== name) return;
    state.events = found;
    renderEvents();
  }

  const EVENT_PREFIX = "Microsoft.ApiManagement.TenantAccess.";

  function shortType(type) {
    return String(type || "").replace(EVENT_PREFIX, "");
  }

  function prop(label, value, role, title) {
    return el("div", {}, el("dt", { text: label }), el("dd", { "data-role": role, text: value, title }));
  }

  function stat(label, value, role, kind) {
    return el("div", { class: `stat${kind ? ` stat-${kind}` : ""}`, "data-role": role },
      el("span", { class: "stat-value", text: String(value) }), el("span", { class: "stat-label", text: label }));
  }

  function renderDeliveries(d) {
    const box = el("div", { class: "deliveries" });
    if (d instanceof ApiError) {
      box.append(el("p", { class: "fine", text: `Could not read the deliveries: ${d.message}` }));
      return box;
    }
    const ago = d.oldest ? relative(d.oldest) : "";
    const age = !d.oldest ? "none" : ago === "just now" ? "< 5 seconds" : ago.replace(/ ago$/, "");
    box.append(el("div", { class: "stats" },
      stat("delivered", d.delivered === null || d.delivered === undefined ? "\u2013" : d.delivered, "delivered", "ok"),
      stat("pending", d.pending, "pending"),
      stat("retrying", d.retrying, "retrying", d.retrying ? "warn" : ""),
      stat("dead letters", d.dead, "dead", d.dead ? "danger" : ""),
      stat("oldest undelivered", age, "oldest")));
    if (d.retries.length) {
      const list = el("ul", { class: "owed", "data-role": "retries" });
      for (const r of d.retries) {
        list.append(el("li", { class: "owed-item", "data-event": r.eventId },
          el("span", { class: "owed-type", text: shortType(r.type) }),
          el("span", { class: "owed-meta", text: `attempt ${r.attempts} failed \u00b7 next attempt ` }),
          el("time", { "data-role": "next-attempt", datetime: r.next ? r.next.toISOString() : "",
            title: formatTime(r.next), text: `${formatTime(r.next)} (${relative(r.next)})` }),
          el("span", { class: "owed-error", text: r.error })));
      }
      box.append(el("h5", { text: "Retrying" }), list);
    }
    if (d.deadLetters.length) {
      const list = el("ul", { class: "owed", "data-role": "dead-letters" });
      for (const r of d.deadLetters) {
        list.append(el("li", { class: "owed-item owed-dead", "data-event": r.eventId },
          el("span", { class: "owed-type", text: shortType(r.type) }),
          el("span", { class: "owed-meta mono", title: r.eventId, text: `event ${shortId(r.eventId)} \u00b7 ${r.attempts} attempt${r.attempts === 1 ? "" : "s"}` }),
          el("span", { class: "owed-error", "data-role": "reason", text: r.error })));
      }
      box.append(el("h5", { text: "Dead letters" }), list,
        el("p", { class: "fine", text: "There is no API to redeliver dead letters: on the server\u2019s host, with its --data-dir or --database-url, run" }),
        el("pre", { class: "command", "data-role": "redeliver", text: d.command }));
    }
    return box;
  }

  function renderEvents() {
    const list = $("subscription-list");
    const note = $("events-note");
    if (!list || !note) return;
    list.replaceChildren();
    if (state.events instanceof ApiError) {
      note.textContent = state.events.status === 403
        ? "Event subscriptions need an owner token."
        : `Could not read the event subscriptions: ${state.events.message}`;
      return;
    }
    if (!state.events) {
      note.textContent = "Loading\u2026";
      return;
    }
    const local = state.events.some(({ deliveries }) => !(deliveries instanceof ApiError) &&
      deliveries.delivered !== null && deliveries.delivered !== undefined);
    note.textContent = !state.events.length
      ? "No event subscriptions. Make one with PUT \u2026/eventSubscriptions/{name} (see docs/events.md)."
      : local ? "Delivered: by this server since it started. Pending, retrying and dead letters: the shared store\u2019s, every replica\u2019s."
        : "This server does not deliver events itself (\u2013: no delivered count). Pending, retrying and dead letters: the shared store\u2019s.";
    for (const { sub, deliveries } of state.events) {
      const types = sub.eventTypes.length ? sub.eventTypes.map(shortType).join(", ") : "all event types";
      list.append(el("article", { class: "subscription", "data-subscription": sub.name },
        el("header", { class: "subscription-head" },
          el("h4", { text: sub.name }),
          el("span", { class: `badge ${sub.signed ? "badge-on" : "badge-off"}`, "data-role": "signed",
            text: sub.signed ? "Signed" : "Unsigned" })),
        el("dl", { class: "props" },
          prop("Destination", sub.destination, "destination"),
          prop("Event types", types, "filter"),
          prop("Schema", sub.schema, "schema"),
          prop("Secret", sub.signed ? "set (never shown)" : "not set", "secret"),
          prop("Metrics label", sub.metricsLabel, "metrics-label", "The subscription label of its /metrics series"),
          prop("Created", formatTime(sub.created), "created")),
        renderDeliveries(deliveries)));
    }
  }

  // -- start ---------------------------------------------------------------------------------------

  function start() {
    $("signin-form").addEventListener("submit", signIn);
    $("no-token").addEventListener("click", () => {
      startSession("", true);
      restoreScope();
    });
    $("signout").addEventListener("click", () => {
      signedOut(null);
      clearDetail();
      $("service-list").replaceChildren();
    });
    $("scope-form").addEventListener("submit", submitScope);
    window.addEventListener("hashchange", () => {
      const scope = parseScope(location.hash.replace(/^#/, ""));
      if (!scope || !state.selected && !scope.service) return;
      if (scope.service && (!state.selected || state.selected.name !== scope.service) &&
          scope.subscription === state.subscription && scope.resourceGroup === state.resourceGroup) {
        selectService(scope.service);
      }
    });
    setInterval(() => {
      if (!$("session").hidden) $("who").textContent = describeSession();
    }, 30000);
    const token = sessionStorage.getItem(TOKEN_KEY);
    const anonymous = sessionStorage.getItem(ANONYMOUS_KEY) === "1";
    if (token || anonymous) {
      startSession(token || "", anonymous);
      restoreScope();
    } else {
      signedOut(null);
    }
  }

  start();
}());
