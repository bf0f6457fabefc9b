// The page of the web view: plain JavaScript, no build step.
// It reads one server-sent event stream (/events): a "hello" with the cluster and the recent
// history, then "protocol" (one two-phase commit message), "node" (a replica's state), "values"
// (the watched keys on one replica), "log" and "replicas" (one more replica to draw) updates.
// Messages are animated one group at a time (a fan-out travels together); in step mode the page
// holds each group until "next" is clicked. The cluster does not wait: the messages queue in this page.
"use strict";

const $ = (selector) => document.querySelector(selector);
const el = (tag, attributes = {}, text) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
};
const svg = (tag, attributes = {}, text) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
};

const CENTER = { x: 320, y: 230 }, RADIUS = 175, CLIENT = "client";
const page = {
  replicas: [], nodes: {}, values: {}, watched: [], positions: {},
  txns: new Map(), order: [], selected: null, controls: null,
  queue: [], playing: false, waitingForStep: null, seen: new Set(),
};

// ------------------------------------------------------------ the stream
function connect() {
  const source = new EventSource("/events");
  source.onopen = () => setConnection(true);
  source.onerror = () => setConnection(false);
  source.onmessage = (message) => handle(JSON.parse(message.data));
}

function setConnection(live) {
  const badge = $("#connection");
  badge.textContent = live ? "live" : "disconnected: reconnecting…";
  badge.className = "badge " + (live ? "live" : "down");
}

function handle(update) {
  switch (update.kind) {
    case "hello": return hello(update);
    case "protocol": return protocol(update, true);
    case "node": return node(update.node);
    case "values": page.values[update.replica] = update.values; return page.queue.length ? null : renderValues();
    case "log": return logLine(update.text, update.level, update.time);
    case "replicas": page.replicas = update.replicas; layout(); Object.values(page.nodes).forEach(node); return renderValues();
  }
}

function hello(update) {
  $("#title").textContent = update.title;
  page.replicas = update.replicas;
  page.controls = update.controls;
  page.txns.clear(); page.order = []; page.queue = []; page.seen = new Set();
  $("#timeline").replaceChildren(); $("#log").replaceChildren();
  layout();
  for (const status of Object.values(update.nodes)) node(status);
  page.values = update.values;
  for (const item of update.history) item.kind === "log" ? logLine(item.text, item.level, item.time) : protocol(item, false);
  setupControls();
  renderValues();
}

// ------------------------------------------------------------ the stage
function layout() {
  const links = $("#links"), nodes = $("#nodes");
  links.replaceChildren(); nodes.replaceChildren();
  page.replicas.forEach((name, index) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * index) / page.replicas.length;
    page.positions[name] = { x: CENTER.x + RADIUS * Math.cos(angle), y: CENTER.y + RADIUS * Math.sin(angle) };
  });
  page.positions[CLIENT] = CENTER;
  const names = page.replicas;
  for (let i = 0; i < names.length; i++)
    for (let j = i + 1; j < names.length; j++) {
      const a = page.positions[names[i]], b = page.positions[names[j]];
      links.append(svg("line", { class: "link", x1: a.x, y1: a.y, x2: b.x, y2: b.y }));
    }
  const client = svg("g", { class: "client", transform: `translate(${CENTER.x},${CENTER.y})` });
  client.append(svg("circle", { r: 26 }), svg("text", { y: 4 }, "client"));
  nodes.append(client);
  for (const name of names) {
    const p = page.positions[name];
    const group = svg("g", { class: "node state-unknown", id: `node-${name}`, transform: `translate(${p.x},${p.y})` });
    group.append(svg("circle", { r: 34 }), svg("text", { class: "name", y: 5 }, name),
                 svg("text", { class: "info", y: 52 }, ""), svg("text", { class: "info digest", y: 66 }, ""));
    nodes.append(group);
  }
  const cards = $("#node-cards");
  cards.replaceChildren();
  for (const name of names) {
    const card = el("div", { class: "node-card", id: `card-${name}`, "data-replica": name, "data-state": "unknown" });
    card.append(el("span", { class: "name" }, name), el("span", { class: "state" }, "…"), el("div", { class: "detail" }, ""));
    if (page.controls) {
      const buttons = el("div", { class: "buttons" });
      for (const action of ["crash", "pause", "resume", "restart"])
        buttons.append(el("button", { "data-action": action, "data-replica": name }, action));
      card.append(buttons);
    }
    cards.append(card);
  }
}

function node(status) {
  page.nodes[status.name] = status;
  // a new epoch settled the transactions its removed coordinators left in doubt: their outcome now
  for (const [txid, outcome] of Object.entries(status.settled || {})) {
    const txn = page.txns.get(txid);
    if (txn && !txn.settled) {
      txn.settled = `settled ${outcome} by epoch ${status.epoch}`;
      txn.outcome = outcome === "commit" ? "committed" : "aborted";
      renderTxn(txn);
    }
  }
  const slug = status.state.replace(/ /g, "-");
  const group = document.getElementById(`node-${status.name}`);
  if (!group) return;
  group.setAttribute("class", `node state-${slug}`);
  const epoch = status.failover ? `epoch ${status.epoch} · ` : "";
  group.querySelector(".info").textContent = status.reachable ? `${epoch}${plural(status.keys, "key")}` : status.state;
  group.querySelector(".digest").textContent = status.digest ? `digest ${status.digest.slice(0, 8)}` : "";
  const card = document.getElementById(`card-${status.name}`);
  card.dataset.state = status.state;
  card.querySelector(".state").textContent = status.state;
  const lines = [];
  if (status.reachable) {
    if (status.failover) lines.push(`${status.role} of epoch ${status.epoch}`,
      status.lease_valid ? `lease ${(+status.lease_remaining).toFixed(2)} s left` : "no read lease");
    else lines.push("strict 2PC (failover off)");
    lines.push(`${plural(status.keys, "key")}, digest ${status.digest}`);
    if (status.in_doubt) lines.push(`${status.in_doubt} in doubt`);
    const armed = Object.entries(status.failpoints || {});
    if (armed.length) lines.push("failpoint " + armed.map(([name, kind]) => `${name}=${kind}`).join(", "));
  } else if (page.controls && status.state === "down") lines.push("down: its restart button brings it back");
  else lines.push(status.error || "unreachable");
  for (const button of card.querySelectorAll("button[data-action]")) {  // only what makes sense in this state
    const action = button.dataset.action;
    button.disabled = (action === "crash" && status.state === "down") || (action === "resume" && status.state !== "paused")
      || (action === "pause" && (status.state === "down" || status.state === "paused"));
  }
  card.querySelector(".detail").textContent = lines.join("\n");
  card.querySelector(".detail").style.whiteSpace = "pre-line";
}

// ------------------------------------------------------------ protocol messages
function txnOf(event) {
  let txn = page.txns.get(event.txid);
  if (!txn) {
    txn = { txid: event.txid, coordinator: event.txid.split(":")[0], events: [], outcome: "pending", writes: null };
    page.txns.set(event.txid, txn);
    page.order.push(txn);
    const item = el("li", { class: "txn", "data-txid": event.txid, "data-outcome": "pending" });
    item.addEventListener("click", () => select(txn, true));
    $("#timeline").prepend(item);
    txn.item = item;
  }
  return txn;
}

// A message from the stream waits in the queue and is recorded (timeline, message table, log) when
// it is shown, so that neither slow motion nor step mode gives the outcome away before its message.
function protocol(event, animate) {
  const key = `${event.txid}|${event.seq}|${event.time}`;
  if (page.seen.has(key)) return;  // in the hello and just after
  page.seen.add(key);
  if (animate) enqueue(event); else record(event, false);
}

function record(event, live) {
  if (event.recorded) return;  // a replayed message
  event.recorded = true;
  const txn = txnOf(event);
  txn.events.push(event);
  txn.events.sort((a, b) => (a.at_ms ?? Infinity) - (b.at_ms ?? Infinity));
  if (event.message === "decision") txn.outcome = event.result.startsWith("COMMIT") ? "committed" : "aborted";
  if (event.message === "answer") {
    txn.writes = event.writes;
    txn.outcome = event.result === "committed" ? "committed" : event.result.startsWith("OutcomeUnknown") ? "unknown"
      : event.result.startsWith("CompareFailed") ? "compare failed" : "aborted";
    txn.answer = event.result;
    if (live) logLine(`${txn.coordinator}: ${describeWrites(txn.writes)}: ${event.result}`,
                         txn.outcome === "committed" ? "info" : "warning", event.time);
  }
  renderTxn(txn);
  if ($("#follow").checked && (page.selected === null || page.selected !== txn)) select(txn, false);
  else if (page.selected === txn) renderMessages();
}

function describeWrites(writes) {
  if (!writes) return "";
  return Object.entries(writes).map(([key, value]) => value === null ? `delete ${key}` : `put ${key}=${value}`).join(", ");
}

function renderTxn(txn) {
  txn.item.dataset.outcome = txn.outcome.replace(/ /g, "-");
  txn.item.replaceChildren(el("span", { class: "who" }, `${txn.coordinator} `),
    el("span", { class: "writes" }, txn.writes ? describeWrites(txn.writes) + " " : `${shortTxid(txn.txid)} `),
    el("span", { class: "outcome" }, txn.settled ? `${txn.outcome} (${txn.settled})` : txn.outcome));
}

function shortTxid(txid) {
  const parts = txid.split(":");
  return parts.length >= 3 ? `${parts[0]}:…:${parts[2]}` : txid;
}

function select(txn, clicked) {
  if (clicked) {
    $("#follow").checked = false;
    replay(txn);
  }
  if (page.selected) page.selected.item.classList.remove("selected");
  page.selected = txn;
  txn.item.classList.add("selected");
  $("#selected-txid").textContent = txn.txid;
  renderMessages();
}

function renderMessages() {
  const body = $("#messages tbody");
  body.replaceChildren();
  for (const event of page.selected.events) {
    const [from, to] = ends(event);
    const row = el("tr", { class: "msg", "data-message": event.message });
    row.append(el("td", {}, event.at_ms === null ? "" : event.at_ms.toFixed(2)), el("td", {}, event.message),
               el("td", {}, from === to ? from : `${from} → ${to}`), el("td", {}, event.result));
    body.append(row);
  }
}

// who sends a message to whom: requests go from the coordinator, answers come back to it
function ends(event) {
  const coordinator = event.txid.split(":")[0], other = event.participant;
  switch (event.message) {
    case "vote": case "haveCommitted": return [other, coordinator];
    case "doAbort": return event.result === "sent" ? [coordinator, other] : [other, coordinator];
    case "doCommit": return event.result === "sent" ? [coordinator, other] : [other, coordinator];
    case "answer": return [coordinator, CLIENT];
    case "canCommit": return event.result === "local" ? [coordinator, coordinator] : [coordinator, other];
    default: return [coordinator, coordinator];
  }
}

function kindOf(event) {
  const result = event.result;
  if (event.message === "decision" || event.message === "reply") return "decision";
  if (event.message === "answer") return result === "committed" ? "yes" : "no";
  if (event.message === "vote") return result.startsWith("YES") ? "yes" : "no";
  if (event.message === "haveCommitted" || result.startsWith("done")) return "yes";
  if (result.startsWith("failed") || result.startsWith("no answer") || result === "timeout") return "no";
  return "request";
}

function labelOf(event) {
  switch (event.message) {
    case "vote": return event.result.split(" ")[0].replace(/^failed$/, "NO (failed)").replace(/^timeout$/, "no vote");
    case "decision": return event.result.split(" ")[0];
    case "haveCommitted": return "ack";
    case "answer": return event.result === "committed" ? "OK" : event.result.split(":")[0];
    case "reply": return "reply";
    default: return event.result === "sent" || event.result === "local" ? event.message : `${event.message}: ${event.result.split(" ")[0]}`;
  }
}

// ------------------------------------------------------------ the player
function enqueue(event) {
  // within one transaction, in the order of its round clock (answers last)
  const key = event.at_ms ?? Infinity;
  let at = page.queue.length;
  for (let i = page.queue.length - 1; i >= 0; i--) {
    const queued = page.queue[i];
    if (queued.txid === event.txid && (queued.at_ms ?? Infinity) > key) at = i; else if (queued.txid === event.txid) break;
  }
  page.queue.splice(at, 0, event);
  showQueued();
  if (!page.playing) play();
}

function replay(txn) {
  page.queue = page.queue.filter((event) => event.txid !== txn.txid).concat(txn.events);
  showQueued();
  if (!page.playing) play();
}

function nextGroup() {
  const first = page.queue.shift();
  const group = [first];
  const [from] = ends(first);
  while (page.queue.length) {
    const next = page.queue[0];
    if (next.txid !== first.txid || next.message !== first.message || kindOf(next) !== kindOf(first)) break;
    if (first.message !== "vote" && first.message !== "haveCommitted" && ends(next)[0] !== from) break;
    group.push(page.queue.shift());
  }
  return group;
}

async function play() {
  page.playing = true;
  while (page.queue.length) {
    if ($("#step-mode").checked) {
      $("#step-next").disabled = false;
      await new Promise((resolve) => { page.waitingForStep = resolve; });
      $("#step-next").disabled = true;
      if (!page.queue.length) break;
    }
    const group = nextGroup();
    group.forEach((event) => record(event, true));
    showQueued();
    await Promise.all(group.map(fly));
  }
  page.playing = false;
  showQueued();
  renderValues();
}

function showQueued() {
  const count = page.queue.length;
  $("#queued").textContent = count ? `${plural(count, "message")} waiting` : "nothing waiting";
}

function plural(count, word) { return `${count} ${word}${count === 1 ? "" : "s"}`; }

function duration() { return +$("#speed").value; }

function fly(event) {
  const [from, to] = ends(event);
  const a = page.positions[from], b = page.positions[to];
  if (!a || !b) return Promise.resolve();
  const kind = kindOf(event);
  const layer = $("#flying");
  const group = svg("g", { class: `msg kind-${kind}`, "data-message": event.message });
  const label = svg("text", { y: -12 }, labelOf(event));
  if (from === to) {  // something the coordinator does itself: a ring around it
    const ring = svg("circle", { class: "pulse", cx: a.x, cy: a.y, r: 36 });
    ring.style.stroke = kind === "no" ? "var(--bad)" : kind === "yes" ? "var(--ok)" : "#6a1b9a";
    group.append(ring, svg("text", { x: a.x, y: a.y - 46 }, labelOf(event)));
    layer.append(group);
    return animate(duration(), (t) => { ring.setAttribute("r", 36 + 14 * t); group.style.opacity = 1 - t * 0.7; })
      .then(() => group.remove());
  }
  group.append(svg("circle", { r: 8 }), label);
  group.setAttribute("transform", `translate(${a.x},${a.y})`);
  layer.append(group);
  return animate(duration(), (t) => {
    const eased = t < 0.5 ? 2 * t * t : 1 - Math.pow(-2 * t + 2, 2) / 2;
    group.setAttribute("transform", `translate(${a.x + (b.x - a.x) * eased},${a.y + (b.y - a.y) * eased})`);
  }).then(() => group.remove());
}

function animate(ms, step) {
  return new Promise((resolve) => {
    const began = performance.now();
    const frame = (now) => {
      const t = Math.min(1, (now - began) / Math.max(ms, 1));
      step(t);
      if (t < 1) requestAnimationFrame(frame); else resolve();
    };
    requestAnimationFrame(frame);
  });
}

// ------------------------------------------------------------ values and the log
function renderValues() {
  const keys = new Set();
  for (const values of Object.values(page.values)) for (const key of Object.keys(values || {})) keys.add(key);
  const head = $("#values thead tr");
  head.replaceChildren(el("th", {}, "key"), ...page.replicas.map((name) => el("th", {}, name)));
  const body = $("#values tbody");
  body.replaceChildren();
  for (const key of [...keys].sort()) {
    const row = el("tr", { "data-key": key });
    row.append(el("td", {}, key));
    const shown = page.replicas.map((name) => ((page.values[name] || {})[key]));
    const answers = shown.filter((cell) => cell && "value" in cell).map((cell) => cell.value);
    const differ = new Set(answers).size > 1;
    page.replicas.forEach((name, index) => {
      const cell = shown[index];
      const td = el("td", { class: "value", "data-replica": name, "data-key": key });
      if (!cell) { td.textContent = "—"; td.classList.add("note"); }
      else if ("value" in cell) {
        const cut = cell.value !== null && cell.length > cell.value.length ? ` (${cell.length.toLocaleString()} characters)` : "";
        td.textContent = cell.value === null ? "(none)" : cell.value + cut;
        if (differ) td.classList.add("differs");
      }
      else { td.textContent = cell.note; td.classList.add("note"); }
      row.append(td);
    });
    body.append(row);
  }
}

function logLine(text, level = "info", time = Date.now() / 1000) {
  const item = el("li", { class: level });
  const when = new Date(time * 1000);
  item.append(el("time", {}, when.toLocaleTimeString([], { hour12: false }) + "." + String(when.getMilliseconds()).padStart(3, "0")),
              document.createTextNode(text));
  const list = $("#log");
  list.prepend(item);
  while (list.children.length > 400) list.lastChild.remove();
}

// ------------------------------------------------------------ controls
function setupControls() {
  const box = $("#controls");
  box.hidden = !page.controls;
  if (!page.controls) return;
  const through = $("#through"), replica = $("#fp-replica"), failpoint = $("#fp-name");
  through.replaceChildren(el("option", { value: "" }, "through any replica"),
    ...page.controls.replicas.map((name) => el("option", { value: name }, `through ${name}`)));
  replica.replaceChildren(...page.controls.replicas.map((name) => el("option", { value: name }, name)));
  failpoint.replaceChildren(...page.controls.failpoints.map((name) => el("option", { value: name }, name)));
}

async function act(action, form) {
  const result = $("#result");
  result.className = "result"; result.textContent = `${action}…`;
  let answer;
  try {
    const response = await fetch(`/action/${action}`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                        body: JSON.stringify(form) });
    answer = await response.json();
  } catch (error) {
    answer = { ok: false, message: `the web view did not answer (${error}): is it still running?` };
  }
  let text = answer.message;
  if (answer.hint) text += ` (${answer.hint})`;
  result.className = "result " + (answer.ok ? "ok" : "error");
  result.textContent = text;
  if (!answer.ok) logLine(`${action} refused: ${text}`, "error");
}

function showFields() {
  const op = $("#op").value;
  $("#key").hidden = op === "txn";
  $("#value").hidden = op !== "put";
  $("#writes").hidden = op !== "txn";
}

document.addEventListener("DOMContentLoaded", () => {
  $("#speed").addEventListener("input", () => { $("#speed-shown").textContent = `${$("#speed").value} ms`; });
  $("#step-next").addEventListener("click", () => { const go = page.waitingForStep; page.waitingForStep = null; if (go) go(); });
  $("#step-mode").addEventListener("change", () => {
    if (!$("#step-mode").checked && page.waitingForStep) $("#step-next").click();
  });
  $("#skip").addEventListener("click", () => {
    page.queue.forEach((event) => record(event, true));
    page.queue = []; showQueued(); renderValues();
    if (page.waitingForStep) $("#step-next").click();
  });
  $("#op").addEventListener("change", showFields);
  $("#data-form").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const op = $("#op").value;
    act(op, { key: $("#key").value, value: $("#value").value, writes: $("#writes").value, replica: $("#through").value });
  });
  $("#failpoint-form").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    act("failpoint", { replica: $("#fp-replica").value, failpoint: $("#fp-name").value, failpoint_action: $("#fp-action").value });
  });
  $("#node-cards").addEventListener("click", (clicked) => {
    const button = clicked.target.closest("button[data-action]");
    if (button) act(button.dataset.action, { replica: button.dataset.replica });
  });
  showFields();
  connect();
});
