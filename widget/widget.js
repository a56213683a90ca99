/*!
 * Knowledge bot web widget: a chat panel for the Rasa knowledge bot, embeddable in any page.
 *
 *   <script>
 *     window.KnowledgeBot = {
 *       serverUrl: "https://bot.example.com:5005",        // rasa run (socket.io channel)
 *       actionServerUrl: "https://bot.example.com:5055",  // action server (live text, feedback)
 *       language: "zh",                                   // "zh" or "en"
 *       title: "云序助手",
 *     };
 *   </script>
 *   <script src="https://bot.example.com:5055/widget/widget.js" async></script>
 *
 * or the same settings as data- attributes of the script tag (data-server-url,
 * data-action-server-url, data-language, data-title, ...). See README.md, "Web widget".
 *
 * How an answer arrives: the action server gives the widget a random conversation id and its
 * key (POST /knowledge/session; both kept in the tab's sessionStorage, so a reload keeps the
 * conversation); that id is the Rasa conversation id. Before the input is enabled the widget
 * listens to the action server's live stream of that conversation (server-sent events,
 * GET /knowledge/stream/<id>?key=<key>: the key proves the conversation is this page's), then
 * joins the socket.io channel with the same id. A knowledge answer grows in a bubble as the LLM writes
 * it (plain text, "delta" events); Rasa's final message (socket.io "bot_uttered" with the
 * structured answer) replaces it, rendered as sanitized markdown with citations, a level
 * badge and thumbs up/down. Other replies (canned answers) arrive through socket.io only.
 * Everything the server sends is either set as text (textContent) or goes through DOMPurify.
 */
(function () {
  "use strict";

  if (window.KnowledgeBotWidget) return; // one widget per page

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var scriptUrl = new URL(script && script.src ? script.src : "widget.js", location.href);

  var STRINGS = {
    zh: {
      title: "知识助手",
      open: "打开聊天",
      close: "关闭",
      placeholder: "输入你的问题…",
      send: "发送",
      clear: "清空对话",
      clearTitle: "清空对话历史（机器人也会忘记之前的内容）",
      connecting: "正在连接…",
      loadFailed: "聊天组件加载失败：{error}",
      unreachable: "无法连接到聊天服务器（{url}），正在重试…",
      disconnected: "与聊天服务器的连接已断开，正在重连…",
      streamUnavailable: "实时回答不可用（{url}），回答将在完成后一次显示。",
      typing: "正在思考…",
      sources: "来源",
      helpful: "有帮助",
      notHelpful: "没有帮助",
      thanks: "谢谢你的反馈！",
      feedbackFailed: "反馈未能保存，请稍后再试。",
      widened: "在当前产品范围内没有找到答案，已在全部知识中查找。",
      failed: "回答中断了。",
      levels: { answer: "已回答", cautious: "谨慎回答", sources_only: "仅提供来源", refuse: "无法回答" },
      levelTitles: {
        answer: "根据知识库回答",
        cautious: "资料相关度一般，请核对来源",
        sources_only: "没有足够把握回答，只列出可能有用的来源",
        refuse: "知识库中没有相关内容",
      },
    },
    en: {
      title: "Knowledge assistant",
      open: "Open chat",
      close: "Close",
      placeholder: "Ask a question…",
      send: "Send",
      clear: "Clear history",
      clearTitle: "Clear the conversation (the bot forgets it too)",
      connecting: "Connecting…",
      loadFailed: "The chat could not load: {error}",
      unreachable: "Cannot reach the chat server ({url}); retrying…",
      disconnected: "Lost the connection to the chat server; reconnecting…",
      streamUnavailable: "Live answers are unavailable ({url}); answers will appear when complete.",
      typing: "Thinking…",
      sources: "Sources",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      thanks: "Thanks for your feedback!",
      feedbackFailed: "Your feedback could not be saved; please try again.",
      widened: "Nothing matched the current product, so the whole knowledge base was searched.",
      failed: "The answer was interrupted.",
      levels: { answer: "Answered", cautious: "Cautious", sources_only: "Sources only", refuse: "Refused" },
      levelTitles: {
        answer: "Answered from the knowledge base",
        cautious: "The passages are only a partial match: check the sources",
        sources_only: "Not sure enough to answer: these sources may help",
        refuse: "Nothing relevant in the knowledge base",
      },
    },
  };

  // ---- configuration: window.KnowledgeBot, then data- attributes, then defaults ----

  var given = window.KnowledgeBot && typeof window.KnowledgeBot === "object" ? window.KnowledgeBot : {};
  var data = (script && script.dataset) || {};

  function setting(name, fallback) {
    if (given[name] !== undefined && given[name] !== null && given[name] !== "") return given[name];
    if (data[name] !== undefined && data[name] !== "") return data[name];
    return fallback;
  }

  function flag(value) {
    return value === true || value === "true" || value === "1" || value === "";
  }

  function trimSlash(url) {
    return String(url).replace(/\/+$/, "");
  }

  var browserLanguage = (navigator.language || "en").toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  var language = String(setting("language", browserLanguage)).toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  var T = STRINGS[language];
  var config = {
    // The widget is served by the action server: it is the default for the live stream; Rasa's
    // default is the same host on port 5005.
    serverUrl: trimSlash(setting("serverUrl", scriptUrl.protocol + "//" + scriptUrl.hostname + ":5005")),
    actionServerUrl: trimSlash(setting("actionServerUrl", scriptUrl.origin)),
    socketPath: setting("socketPath", "/socket.io"),
    // Long-polling only by default: Rasa 3.6's socket.io server (Sanic 21.12) fails websocket
    // upgrades on Python 3.11 ("Passing coroutines is forbidden"), and a failed upgrade leaves
    // the session without its messages. Give ["polling", "websocket"] where websockets work.
    transports: [].concat(setting("transports", ["polling"])).join(",").split(/\s*,\s*/).filter(Boolean),
    language: language,
    title: setting("title", T.title),
    container: setting("container", null), // a CSS selector or an element: inline instead of floating
    open: flag(setting("open", false)),
    sourceBaseUrl: setting("sourceBaseUrl", ""), // turns source file paths into links (base + path)
    vendorUrl: setting("vendorUrl", new URL("vendor/", scriptUrl).href),
    recordEvents: flag(setting("recordEvents", false)), // window.__kbEvents, for tests and benchmarks
  };

  // ---- event record (tests, benchmarks) ----

  var events = config.recordEvents ? (window.__kbEvents = window.__kbEvents || []) : null;
  function record(kind, detail) {
    if (!events || replaying) return;
    var entry = { t: performance.now(), wall: Date.now(), kind: kind };
    for (var key in detail || {}) entry[key] = detail[key];
    events.push(entry);
  }

  // ---- session: the conversation id and its key, from the action server, kept for the tab's life ----

  var STORAGE_KEY = "kb-widget-conversation";
  var sessionId = null; // the conversation id (Rasa's sender id), once the action server gave it
  var sessionKey = null; // its key: the stream and feedback of this conversation need it

  function keptSession() {
    try {
      var kept = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      return kept && typeof kept.conversation_id === "string" && typeof kept.key === "string" ? kept : null;
    } catch (err) {
      return null; // storage blocked or spoiled: a new conversation
    }
  }

  /** Ask the action server for this tab's conversation (the kept one while its key is valid);
   * retries until it answers. Resolves once ``sessionId`` and ``sessionKey`` are set. */
  function openSession() {
    var kept = keptSession();
    var delay = 1000;
    return new Promise(function (resolve) {
      function attempt() {
        fetch(config.actionServerUrl + "/knowledge/session", {
          method: "POST",
          headers: { "Content-Type": "text/plain;charset=UTF-8" }, // JSON body; a simple request (no preflight)
          body: kept ? JSON.stringify(kept) : "",
        }).then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        }).then(function (session) {
          if (kept && kept.conversation_id !== session.conversation_id) forgetTranscript(kept.conversation_id);
          sessionId = session.conversation_id;
          sessionKey = session.key;
          try { sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session)); } catch (err) { /* blocked */ }
          record("session", { session_id: sessionId, kept: !!kept && kept.conversation_id === sessionId });
          resolve();
        }).catch(function () {
          setNotice(format(T.unreachable, { url: config.actionServerUrl }));
          setTimeout(attempt, delay);
          delay = Math.min(delay * 2, 10000);
        });
      }
      attempt();
    });
  }

  // ---- transcript: what this tab's conversation showed, drawn again after a reload ----
  // (the conversation outlives a reload, and so does Rasa's memory of it)

  var TRANSCRIPT_MAX = 200; // messages kept, the newest
  var replaying = false;

  function transcriptKey(conversationId) {
    return "kb-widget-transcript:" + (conversationId || sessionId);
  }

  function loadTranscript() {
    try {
      var entries = JSON.parse(sessionStorage.getItem(transcriptKey()) || "[]");
      return Array.isArray(entries) ? entries : [];
    } catch (err) {
      return [];
    }
  }

  function remember(entry) {
    if (replaying) return;
    var entries = loadTranscript();
    entries.push(entry);
    try { sessionStorage.setItem(transcriptKey(), JSON.stringify(entries.slice(-TRANSCRIPT_MAX))); } catch (err) { /* full or blocked */ }
  }

  function forgetTranscript(conversationId) {
    try { sessionStorage.removeItem(transcriptKey(conversationId)); } catch (err) { /* blocked */ }
  }

  function replayTranscript() {
    replaying = true;
    try {
      loadTranscript().forEach(function (entry) {
        if (!entry || typeof entry !== "object") return;
        if (entry.kind === "user") addMessage(el("div", "kbw-msg kbw-user", String(entry.text || "")));
        else if (entry.kind === "answer") finishTurn(entry.message || {}, entry.via);
        else if (entry.kind === "bot") onBotMessage(entry.message);
        else if (entry.kind === "feedback") {
          var rated = turns[entry.turn_id];
          var bar = rated && rated.bubble && rated.bubble.querySelector(".kbw-feedback");
          if (bar) showRated(bar, entry.rating);
        }
      });
    } finally {
      replaying = false;
    }
  }

  // ---- styles (every class starts with kbw-) ----

  var CSS = [
    ".kbw-root{--kbw-accent:#2563eb;--kbw-bg:#fff;--kbw-fg:#1f2937;--kbw-muted:#6b7280;--kbw-line:#e5e7eb;",
    "font:14px/1.5 system-ui,-apple-system,'Segoe UI','PingFang SC','Microsoft YaHei',sans-serif;color:var(--kbw-fg);",
    "box-sizing:border-box;text-align:left}",
    ".kbw-root *,.kbw-root *::before,.kbw-root *::after{box-sizing:inherit}",
    ".kbw-floating{position:fixed;right:20px;bottom:20px;z-index:2147483000}",
    ".kbw-launcher{width:56px;height:56px;border-radius:50%;border:0;background:var(--kbw-accent);color:#fff;",
    "display:flex;align-items:center;justify-content:center;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}",
    ".kbw-panel{display:flex;flex-direction:column;background:var(--kbw-bg);border:1px solid var(--kbw-line);",
    "border-radius:12px;overflow:hidden;box-shadow:0 8px 30px rgba(0,0,0,.18)}",
    ".kbw-floating .kbw-panel{position:absolute;right:0;bottom:0;width:380px;height:580px;max-height:calc(100vh - 40px);",
    "max-width:calc(100vw - 40px)}",
    ".kbw-inline .kbw-panel{width:100%;height:100%;min-height:420px}",
    ".kbw-hidden{display:none!important}",
    ".kbw-header{display:flex;align-items:center;gap:8px;padding:10px 12px;background:var(--kbw-accent);color:#fff}",
    ".kbw-title{flex:1;font-weight:600;font-size:15px;margin:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}",
    ".kbw-header button{background:rgba(255,255,255,.15);color:#fff;border:0;border-radius:6px;padding:4px 8px;",
    "cursor:pointer;font:inherit;font-size:12px}",
    ".kbw-header button:hover{background:rgba(255,255,255,.3)}",
    ".kbw-notice{padding:6px 12px;font-size:12px;background:#fef3c7;color:#92400e;border-bottom:1px solid #fde68a}",
    ".kbw-log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:10px;background:#f9fafb}",
    ".kbw-msg{max-width:88%;padding:8px 11px;border-radius:12px;word-wrap:break-word;overflow-wrap:anywhere}",
    ".kbw-user{align-self:flex-end;background:var(--kbw-accent);color:#fff;white-space:pre-wrap;border-bottom-right-radius:4px}",
    ".kbw-bot{align-self:flex-start;background:#fff;border:1px solid var(--kbw-line);border-bottom-left-radius:4px}",
    ".kbw-streaming .kbw-text{white-space:pre-wrap}",
    ".kbw-streaming .kbw-text::after{content:'\\258D';color:var(--kbw-muted);animation:kbw-blink 1s steps(1) infinite}",
    "@keyframes kbw-blink{50%{opacity:0}}",
    ".kbw-typing{color:var(--kbw-muted);font-style:italic}",
    ".kbw-body p{margin:0 0 .5em}.kbw-body p:last-child{margin-bottom:0}",
    ".kbw-body ul,.kbw-body ol{margin:.3em 0 .5em;padding-left:1.4em}",
    ".kbw-body pre{background:#f3f4f6;padding:8px;border-radius:6px;overflow-x:auto;font-size:12px}",
    ".kbw-body code{background:#f3f4f6;padding:1px 4px;border-radius:4px;font-size:12px}",
    ".kbw-body pre code{padding:0;background:none}",
    ".kbw-body img{max-width:100%;height:auto;border-radius:6px}",
    ".kbw-body a,.kbw-sources a{color:var(--kbw-accent)}",
    ".kbw-body table{border-collapse:collapse;font-size:12px}.kbw-body td,.kbw-body th{border:1px solid var(--kbw-line);padding:2px 6px}",
    ".kbw-cite{text-decoration:none;font-size:.85em;vertical-align:super;line-height:0;padding:0 1px}",
    ".kbw-badge{display:inline-block;font-size:11px;font-weight:600;padding:1px 8px;border-radius:999px;margin-bottom:6px}",
    ".kbw-level-answer{background:#dcfce7;color:#166534}",
    ".kbw-level-cautious{background:#fef9c3;color:#854d0e}",
    ".kbw-level-sources_only{background:#e0e7ff;color:#3730a3}",
    ".kbw-level-refuse{background:#fee2e2;color:#991b1b}",
    ".kbw-note{font-size:12px;color:var(--kbw-muted);margin-top:6px}",
    ".kbw-sources{margin-top:8px;padding-top:6px;border-top:1px solid var(--kbw-line);font-size:12px}",
    ".kbw-sources-title{font-weight:600;color:var(--kbw-muted)}",
    ".kbw-sources ol{list-style:none;margin:2px 0 0;padding:0}",
    ".kbw-sources li{margin:2px 0}.kbw-sources li.kbw-flash{background:#fef9c3}",
    ".kbw-path{font-family:ui-monospace,monospace;color:var(--kbw-muted);word-break:break-all}",
    ".kbw-feedback{display:flex;align-items:center;gap:6px;margin-top:8px;font-size:12px;color:var(--kbw-muted)}",
    ".kbw-feedback button{border:1px solid var(--kbw-line);background:#fff;color:var(--kbw-muted);border-radius:6px;",
    "padding:3px 8px;cursor:pointer;display:inline-flex;align-items:center}",
    ".kbw-feedback button:hover:not(:disabled){color:var(--kbw-accent);border-color:var(--kbw-accent)}",
    ".kbw-feedback button:disabled{cursor:default;opacity:.55}",
    ".kbw-feedback button.kbw-chosen{opacity:1;color:var(--kbw-accent);border-color:var(--kbw-accent);background:#eff6ff}",
    ".kbw-error{border-color:#fecaca;background:#fef2f2}",
    ".kbw-replies{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}",
    ".kbw-replies button{border:1px solid var(--kbw-accent);color:var(--kbw-accent);background:#fff;border-radius:999px;",
    "padding:2px 10px;cursor:pointer;font:inherit;font-size:12px}",
    ".kbw-form{display:flex;gap:8px;padding:10px;border-top:1px solid var(--kbw-line);background:#fff}",
    ".kbw-input{flex:1;resize:none;border:1px solid var(--kbw-line);border-radius:8px;padding:7px 9px;font:inherit;",
    "min-height:38px;max-height:120px;color:var(--kbw-fg);background:#fff}",
    ".kbw-input:focus{outline:2px solid var(--kbw-accent);outline-offset:-1px}",
    ".kbw-send{border:0;border-radius:8px;background:var(--kbw-accent);color:#fff;padding:0 14px;cursor:pointer;font:inherit}",
    ".kbw-send:disabled,.kbw-input:disabled{opacity:.5;cursor:not-allowed}",
    "@media (max-width:480px){.kbw-floating{right:0;bottom:0}.kbw-floating .kbw-panel{position:fixed;inset:0;width:auto;",
    "height:auto;max-height:none;max-width:none;border-radius:0}}",
  ].join("");

  // ---- small DOM helpers ----

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return values[key]; });
  }

  function isWebUrl(url) {
    return /^https?:\/\//i.test(url || "");
  }

  // Icons as inline SVG (emoji need a font the host may lack); paths from Feather (MIT).
  var ICONS = {
    chat: "M21 11.5a8.38 8.38 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.38 8.38 0 0 1-3.8-.9L3 21l1.9-5.7a8.38 8.38 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.38 8.38 0 0 1 3.8-.9h.5a8.48 8.48 0 0 1 8 8v.5z",
    up: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
    down: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
  };

  function icon(name, size) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", String(size));
    svg.setAttribute("height", String(size));
    svg.setAttribute("fill", "none");
    svg.setAttribute("stroke", "currentColor");
    svg.setAttribute("stroke-width", "2");
    svg.setAttribute("stroke-linecap", "round");
    svg.setAttribute("stroke-linejoin", "round");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", ICONS[name]);
    svg.appendChild(path);
    return svg;
  }

  // ---- the widget's DOM ----

  var root = el("div", "kbw-root");
  root.setAttribute("lang", language === "zh" ? "zh-CN" : "en");
  var panel = el("section", "kbw-panel");
  panel.setAttribute("aria-label", config.title);
  var header = el("div", "kbw-header");
  var title = el("h2", "kbw-title", config.title);
  var clearButton = el("button", "kbw-clear", T.clear);
  clearButton.type = "button";
  clearButton.title = T.clearTitle;
  var closeButton = el("button", "kbw-close", "\u2715");
  closeButton.type = "button";
  closeButton.title = T.close;
  closeButton.setAttribute("aria-label", T.close);
  header.append(title, clearButton, closeButton);
  var notice = el("div", "kbw-notice", T.connecting);
  notice.setAttribute("role", "status");
  var log = el("div", "kbw-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var form = el("form", "kbw-form");
  var input = el("textarea", "kbw-input");
  input.rows = 1;
  input.placeholder = T.placeholder;
  input.setAttribute("aria-label", T.placeholder);
  input.disabled = true;
  var sendButton = el("button", "kbw-send", T.send);
  sendButton.type = "submit";
  sendButton.disabled = true;
  form.append(input, sendButton);
  panel.append(header, notice, log, form);
  var launcher = el("button", "kbw-launcher");
  launcher.appendChild(icon("chat", 26));
  launcher.type = "button";
  launcher.title = T.open;
  launcher.setAttribute("aria-label", T.open);

  function mount() {
    if (!document.getElementById("kbw-style")) {
      var style = el("style");
      style.id = "kbw-style";
      style.textContent = CSS;
      document.head.appendChild(style);
    }
    var host = config.container;
    if (typeof host === "string") host = document.querySelector(host);
    if (host) {
      root.classList.add("kbw-inline");
      root.appendChild(panel);
      closeButton.classList.add("kbw-hidden");
      host.appendChild(root);
    } else {
      root.classList.add("kbw-floating");
      root.append(panel, launcher);
      setOpen(config.open);
      document.body.appendChild(root);
    }
  }

  function setOpen(open) {
    panel.classList.toggle("kbw-hidden", !open);
    launcher.classList.toggle("kbw-hidden", open);
    if (open) setTimeout(function () { input.focus(); }, 0);
  }

  launcher.addEventListener("click", function () { setOpen(true); });
  closeButton.addEventListener("click", function () { setOpen(false); });

  function setNotice(text) {
    notice.textContent = text || "";
    notice.classList.toggle("kbw-hidden", !text);
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  // ---- third-party libraries, loaded from vendor/ without touching the page's globals ----

  var lib = { io: null, marked: null, purify: null };

  function loadScript(file, globalName) {
    return new Promise(function (resolve, reject) {
      var had = Object.prototype.hasOwnProperty.call(window, globalName);
      var previous = window[globalName];
      var amd = window.define && window.define.amd ? window.define : null;
      if (amd) window.define = undefined; // make the UMD builds set a global, not an AMD module
      var tag = document.createElement("script");
      tag.src = new URL(file, config.vendorUrl).href;
      tag.async = false;
      function restore() {
        if (amd) window.define = amd;
        var ours = window[globalName];
        if (had) window[globalName] = previous;
        else delete window[globalName];
        return ours;
      }
      tag.onload = function () {
        var ours = restore();
        if (ours) resolve(ours);
        else reject(new Error(file + " did not define " + globalName));
      };
      tag.onerror = function () {
        restore();
        reject(new Error("cannot load " + tag.src));
      };
      document.head.appendChild(tag);
    });
  }

  function loadLibraries() {
    return loadScript("socket.io.min.js", "io")
      .then(function (io) { lib.io = io; return loadScript("marked.umd.js", "marked"); })
      .then(function (marked) { lib.marked = marked; return loadScript("purify.min.js", "DOMPurify"); })
      .then(function (purify) { lib.purify = purify; });
  }

  // ---- rendering: markdown -> sanitized DOM; citations -> links ----

  var PURIFY_OPTIONS = {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "iframe", "object", "embed"],
    FORBID_ATTR: ["style", "id", "name", "class"],
  };

  function markdown(text) {
    var html = lib.marked.parse(String(text || ""), { gfm: true, breaks: true, async: false });
    var fragment = lib.purify.sanitize(html, PURIFY_OPTIONS);
    var links = fragment.querySelectorAll("a");
    for (var i = 0; i < links.length; i++) {
      var a = links[i];
      var href = a.getAttribute("href") || "";
      if (isWebUrl(href) || /^mailto:/i.test(href)) {
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
      } else {
        // a file path or a page-relative link means nothing on the host page: show it as text
        var span = el("span", href ? "kbw-linktext" : "");
        span.textContent = a.textContent;
        if (href) span.title = href;
        a.replaceWith(span);
      }
    }
    var images = fragment.querySelectorAll("img");
    for (var j = 0; j < images.length; j++) {
      var img = images[j];
      if (!isWebUrl(img.getAttribute("src")) && !/^data:image\//i.test(img.getAttribute("src") || "")) {
        img.replaceWith(document.createTextNode(img.getAttribute("alt") || ""));
      } else {
        img.loading = "lazy";
        img.referrerPolicy = "no-referrer";
      }
    }
    return fragment;
  }

  var anchorCounter = 0;

  function sourceHref(citation) {
    if (isWebUrl(citation.link)) return citation.link;
    if (config.sourceBaseUrl && citation.link) {
      try { return new URL(citation.link, config.sourceBaseUrl).href; } catch (err) { return null; }
    }
    return null;
  }

  /** Turn each "[n]" of ``container``'s text (outside code and links) into a link. */
  function linkCitations(container, byNumber, anchors) {
    var walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT, {
      acceptNode: function (node) {
        return node.parentElement && node.parentElement.closest("a,code,pre") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT;
      },
    });
    var nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    nodes.forEach(function (node) {
      var text = node.nodeValue;
      var pattern = /\[(\d{1,3})\]/g;
      if (!pattern.test(text)) return;
      pattern.lastIndex = 0;
      var out = document.createDocumentFragment();
      var last = 0;
      var match;
      while ((match = pattern.exec(text))) {
        var citation = byNumber[match[1]];
        if (!citation) continue;
        out.appendChild(document.createTextNode(text.slice(last, match.index)));
        out.appendChild(citeLink(citation, anchors[match[1]]));
        last = match.index + match[0].length;
      }
      out.appendChild(document.createTextNode(text.slice(last)));
      node.replaceWith(out);
    });
  }

  function citeLink(citation, anchorId) {
    var a = el("a", "kbw-cite", "[" + citation.number + "]");
    a.title = citation.title + (citation.link ? " \u2014 " + citation.link : "");
    var href = sourceHref(citation);
    if (href) {
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
    } else {
      // no web address (a file of the knowledge base): the link shows the source in the list
      a.href = "#" + (anchorId || "");
      a.addEventListener("click", function (event) {
        event.preventDefault();
        var item = anchorId && document.getElementById(anchorId);
        if (!item) return;
        item.scrollIntoView({ block: "nearest" });
        item.classList.add("kbw-flash");
        setTimeout(function () { item.classList.remove("kbw-flash"); }, 1200);
      });
    }
    return a;
  }

  function sourcesList(citations, anchors) {
    var box = el("div", "kbw-sources");
    box.appendChild(el("div", "kbw-sources-title", T.sources));
    var list = el("ol");
    citations.forEach(function (citation) {
      var item = el("li");
      item.id = anchors[citation.number];
      item.appendChild(el("span", "kbw-src-num", "[" + citation.number + "] "));
      var href = sourceHref(citation);
      if (href) {
        var a = el("a", "kbw-src-link", citation.title || citation.link);
        a.href = href;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        item.appendChild(a);
      } else {
        item.appendChild(el("span", "kbw-src-title", citation.title || ""));
        if (citation.link) {
          item.appendChild(document.createTextNode(" \u2014 "));
          item.appendChild(el("span", "kbw-path", citation.link));
        }
      }
      list.appendChild(item);
    });
    box.appendChild(list);
    return box;
  }

  /** The text of a "done" event without the plain-text sources block channels append. */
  function withoutSourcesBlock(text) {
    return String(text || "").replace(/\n\n[^\n]*[:\uff1a]\n(\[\d+\][^\n]*(\n|$))+$/, "");
  }

  function levelBadge(level) {
    var badge = el("span", "kbw-badge kbw-level-" + level, T.levels[level] || level);
    badge.title = T.levelTitles[level] || "";
    badge.setAttribute("data-level", level);
    return badge;
  }

  // ---- turns and messages ----

  var turns = {}; // turn id -> {bubble, text, final, done, timer, deltas}
  var typing = null;
  var sentAt = null;
  var skipText = {}; // texts already shown from the stream (an error), not to show twice
  // After "clear history", what the turns before it still send (a streaming answer, a form's
  // next question) is dropped until the bot confirms; Rasa answers a conversation's messages
  // in order, and the channel names each text's response (channels/socketio.py).
  var CLEARED_RESPONSE = "utter_history_cleared";
  var clearing = false;

  function addMessage(node) {
    log.appendChild(node);
    scrollDown();
    return node;
  }

  function showTyping() {
    if (typing) return;
    typing = addMessage(el("div", "kbw-msg kbw-bot kbw-typing", T.typing));
  }

  function hideTyping() {
    if (typing) typing.remove();
    typing = null;
  }

  function turnFor(turnId) {
    var turn = turns[turnId];
    if (!turn) {
      turn = turns[turnId] = { id: turnId, bubble: null, text: "", final: false, done: null, timer: null, deltas: 0 };
    }
    if (!turn.bubble) {
      hideTyping();
      turn.bubble = addMessage(el("div", "kbw-msg kbw-bot kbw-streaming"));
      turn.bubble.setAttribute("data-turn-id", turnId);
      turn.bubble.appendChild(el("div", "kbw-text"));
    }
    return turn;
  }

  function onStreamEvent(event) {
    record("sse", event);
    if (clearing) return;
    var turnId = event.turn_id;
    if (!turnId) return;
    var known = turns[turnId];
    if (known && known.final) return; // Rasa's message came first: it wins
    if (event.type === "start") {
      turnFor(turnId);
    } else if (event.type === "delta") {
      var turn = turnFor(turnId);
      turn.text += event.text || "";
      turn.bubble.firstChild.textContent = turn.text; // plain text while it grows
      turn.deltas += 1;
      if (turn.deltas === 1) record("first_delta_rendered", { turn_id: turnId, since_send: sentAt === null ? null : performance.now() - sentAt });
      scrollDown();
    } else if (event.type === "done") {
      var finished = turnFor(turnId);
      finished.done = event;
      // Rasa's bot_uttered normally follows within milliseconds; if it never comes (another
      // channel answered, a proxy dropped it), the stream's copy of the answer is shown.
      finished.timer = setTimeout(function () { finishTurn(event, "stream"); }, 5000);
    } else if (event.type === "error") {
      var failed = turnFor(turnId);
      failed.final = true;
      failed.bubble.classList.remove("kbw-streaming");
      failed.bubble.classList.add("kbw-error");
      failed.bubble.textContent = "";
      if (failed.text) failed.bubble.appendChild(el("div", "kbw-text", failed.text));
      failed.bubble.appendChild(el("div", "kbw-body", event.text || T.failed));
      if (event.text) skipText[event.text.trim()] = true; // Rasa says the same: show it once
    }
  }

  function finishTurn(message, via) {
    var turnId = message.turn_id;
    var turn = turnId ? turns[turnId] : null;
    if (turn && turn.final) return;
    if (!turn) {
      turn = turnId ? turnFor(turnId) : { bubble: null };
      if (!turn.bubble) {
        hideTyping();
        turn.bubble = addMessage(el("div", "kbw-msg kbw-bot"));
      }
    }
    if (turn.timer) clearTimeout(turn.timer);
    turn.final = true;
    var bubble = turn.bubble;
    bubble.className = "kbw-msg kbw-bot kbw-answer kbw-final";
    bubble.setAttribute("data-via", via);
    fillAnswer(bubble, message, via);
    if (turnId) bubble.appendChild(feedbackBar(turnId));
    remember({ kind: "answer", message: message, via: via });
    record("final_rendered", { turn_id: turnId, via: via, level: message.level, text: message.text });
    scrollDown();
  }

  /** ``bubble``'s content for a structured answer: level badge, sanitized markdown with
   * citation links, the cited sources, notes. */
  function fillAnswer(bubble, message, via) {
    var level = message.level || "answer";
    bubble.setAttribute("data-level", level);
    bubble.textContent = "";
    bubble.appendChild(levelBadge(level));
    var citations = Array.isArray(message.citations) ? message.citations : [];
    var sources = Array.isArray(message.sources) ? message.sources : [];
    var byNumber = {};
    var anchors = {};
    sources.concat(citations).forEach(function (c) {
      if (c && c.number !== undefined) {
        byNumber[c.number] = c;
        anchors[c.number] = anchors[c.number] || "kbw-src-" + ++anchorCounter;
      }
    });
    var text = via === "stream" ? withoutSourcesBlock(message.text) : message.text;
    var body = el("div", "kbw-body");
    body.appendChild(markdown(text));
    linkCitations(body, byNumber, anchors);
    bubble.appendChild(body);
    if (citations.length) bubble.appendChild(sourcesList(citations, anchors));
    else if (sources.length && level === "sources_only") {
      // the text lists them; give the [n] links somewhere to point to
      bubble.appendChild(sourcesList(sources, anchors));
    }
    if (message.widened) bubble.appendChild(el("div", "kbw-note", T.widened));
    if (message.notice && String(text || "").indexOf(message.notice) < 0) bubble.appendChild(el("div", "kbw-note", message.notice));
  }

  function feedbackBar(turnId) {
    var bar = el("div", "kbw-feedback");
    var up = el("button", "kbw-thumb kbw-up");
    var down = el("button", "kbw-thumb kbw-down");
    up.appendChild(icon("up", 15));
    down.appendChild(icon("down", 15));
    var status = el("span", "kbw-feedback-status");
    status.setAttribute("role", "status");
    [[up, 1, T.helpful], [down, -1, T.notHelpful]].forEach(function (spec) {
      var button = spec[0];
      button.type = "button";
      button.title = spec[2];
      button.setAttribute("aria-label", spec[2]);
      button.setAttribute("data-rating", String(spec[1]));
      button.addEventListener("click", function () {
        up.disabled = down.disabled = true;
        status.textContent = "";
        sendFeedback(turnId, spec[1]).then(
          function (result) {
            showRated(bar, spec[1]);
            remember({ kind: "feedback", turn_id: turnId, rating: spec[1] });
            record("feedback", { turn_id: turnId, rating: spec[1], stored: result.stored });
          },
          function (err) {
            up.disabled = down.disabled = false;
            status.textContent = T.feedbackFailed;
            record("feedback_failed", { turn_id: turnId, error: String(err) });
          }
        );
      });
    });
    bar.append(up, down, status);
    return bar;
  }

  /** The feedback ``bar`` once ``rating`` is stored: the chosen thumb marked, both disabled. */
  function showRated(bar, rating) {
    var chosen = bar.querySelector(".kbw-thumb[data-rating='" + rating + "']");
    bar.querySelectorAll(".kbw-thumb").forEach(function (thumb) { thumb.disabled = true; });
    if (chosen) chosen.classList.add("kbw-chosen");
    bar.querySelector(".kbw-feedback-status").textContent = T.thanks;
  }

  function sendFeedback(turnId, rating) {
    return fetch(config.actionServerUrl + "/knowledge/feedback", {
      method: "POST",
      headers: { "Content-Type": "text/plain;charset=UTF-8" }, // JSON body; a simple request (no preflight)
      body: JSON.stringify({ conversation_id: sessionId, key: sessionKey, turn_id: turnId, rating: rating }),
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function onBotMessage(message) {
    record("bot_uttered", { message: message });
    if (!message || typeof message !== "object") return;
    if (clearing) {
      if (message.response !== CLEARED_RESPONSE) {
        record("dropped", { message: message });
        return;
      }
      clearing = false;
    }
    if (message.type === "knowledge_answer") {
      finishTurn(message, "rasa");
      return;
    }
    var text = typeof message.text === "string" ? message.text : "";
    if (text && skipText[text.trim()]) {
      delete skipText[text.trim()];
      hideTyping();
      return;
    }
    var replies = message.quick_replies || message.buttons || [];
    var image = message.attachment && message.attachment.payload && message.attachment.payload.src;
    if (!text && !replies.length && !image) return;
    hideTyping();
    var bubble = el("div", "kbw-msg kbw-bot kbw-canned");
    if (text) {
      var body = el("div", "kbw-body");
      body.appendChild(markdown(text));
      bubble.appendChild(body);
    }
    if (image && isWebUrl(image)) {
      var img = el("img");
      img.src = image;
      img.alt = "";
      img.style.maxWidth = "100%";
      bubble.appendChild(img);
    }
    if (replies.length) {
      var box = el("div", "kbw-replies");
      replies.forEach(function (reply) {
        var button = el("button", "", reply.title || reply.payload);
        button.type = "button";
        button.addEventListener("click", function () { send(reply.payload || reply.title, reply.title); });
        box.appendChild(button);
      });
      bubble.appendChild(box);
    }
    addMessage(bubble);
    remember({ kind: "bot", message: message });
  }

  // ---- connections: the live stream first, then socket.io ----

  var socket = null;
  var stream = null;
  var streamOpen = false;
  var socketReady = false;
  var streamGaveUp = false;
  var streamWasOpen = false;

  function updateReady() {
    // the input waits for the live stream once (the first answer must not start before it
    // listens); a stream that drops later only costs the live text, answers still arrive whole
    var ready = socketReady && (streamOpen || streamGaveUp || streamWasOpen);
    input.disabled = sendButton.disabled = !ready;
    if (ready && streamOpen) setNotice("");
    record("ready", { ready: ready, stream: streamOpen, socket: socketReady });
  }

  function openStream() {
    stream = new EventSource(
      config.actionServerUrl + "/knowledge/stream/" + encodeURIComponent(sessionId) + "?key=" + encodeURIComponent(sessionKey)
    );
    var giveUp = setTimeout(function () {
      if (streamOpen) return;
      streamGaveUp = true; // answers still come whole through socket.io
      setNotice(format(T.streamUnavailable, { url: config.actionServerUrl }));
      if (socket === null) connectSocket();
      updateReady();
    }, 10000);
    stream.addEventListener("open", function () {
      clearTimeout(giveUp);
      streamOpen = streamWasOpen = true;
      streamGaveUp = false;
      record("stream_open");
      if (socket === null) connectSocket();
      updateReady();
    });
    stream.addEventListener("message", function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (err) { return; }
      onStreamEvent(event);
    });
    stream.addEventListener("error", function () {
      // EventSource reconnects by itself; until then answers arrive whole
      record("stream_error");
      if (socket === null) setNotice(format(T.unreachable, { url: config.actionServerUrl }));
      else if (streamOpen) setNotice(format(T.streamUnavailable, { url: config.actionServerUrl }));
      streamOpen = false;
      updateReady();
    });
  }

  function connectSocket() {
    socket = lib.io(config.serverUrl, {
      path: config.socketPath,
      transports: config.transports,
      reconnectionDelayMax: 10000,
    });
    socket.on("connect", function () {
      socket.emit("session_request", { session_id: sessionId });
    });
    socket.on("session_confirm", function (confirmed) {
      record("session_confirm", { session_id: confirmed });
      socketReady = true;
      if (!streamOpen && !streamGaveUp) setNotice(T.connecting);
      updateReady();
    });
    socket.on("connect_error", function () {
      socketReady = false;
      setNotice(format(T.unreachable, { url: config.serverUrl }));
      updateReady();
    });
    socket.on("disconnect", function () {
      socketReady = false;
      setNotice(T.disconnected);
      updateReady();
    });
    socket.on("bot_uttered", onBotMessage);
  }

  function send(text, shown) {
    text = String(text || "").trim();
    if (!text || !socket || !socketReady) return;
    if (shown !== null) {
      clearing = false; // a new question: its replies are shown, confirmed or not
      addMessage(el("div", "kbw-msg kbw-user", shown || text));
      remember({ kind: "user", text: shown || text });
    }
    showTyping();
    sentAt = performance.now();
    record("send", { text: text });
    socket.emit("user_uttered", { message: text, session_id: sessionId });
    if (text.charAt(0) !== "/") prepare(text);
  }

  // Embed the question on the action server while Rasa classifies it (actions/live.py);
  // text/plain keeps it a simple request (no CORS preflight). Nothing depends on the reply.
  function prepare(text) {
    fetch(config.actionServerUrl + "/knowledge/prepare", {
      method: "POST",
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
      body: JSON.stringify({ text: text }),
    }).catch(function () {});
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (input.disabled) return;
    var text = input.value;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });
  clearButton.addEventListener("click", function () {
    if (!socket || !socketReady) return;
    log.textContent = "";
    typing = null;
    Object.keys(turns).forEach(function (id) { if (turns[id].timer) clearTimeout(turns[id].timer); });
    turns = {};
    forgetTranscript();
    clearing = true;
    send("/clear_history", null); // the clear_history intent: the bot forgets the history and scope
  });

  function start() {
    mount();
    window.KnowledgeBotWidget.loaded = loadLibraries().then(function () {
      openSession().then(function () {
        replayTranscript();
        openStream();
      });
    }, function (err) {
      setNotice(format(T.loadFailed, { error: err.message }));
      throw err;
    });
  }

  window.KnowledgeBotWidget = {
    /** The conversation id (null until the action server has given it). */
    get sessionId() { return sessionId; },
    config: config,
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    send: function (text) { send(text); },
    /** A detached bubble rendered from a structured answer, as the widget would show it (tests). */
    renderAnswer: function (message) {
      var bubble = el("div", "kbw-msg kbw-bot kbw-answer");
      fillAnswer(bubble, message, "rasa");
      return bubble;
    },
    /** Resolves when the third-party libraries are loaded. */
    loaded: null,
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
