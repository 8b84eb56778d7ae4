// The page: a form from the served model's categories, the answer, and the PCA chart.
// Text from the server or the user is only ever set with textContent: never parsed as HTML.
"use strict";

const MEASURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"];
const CATEGORIES = ["island", "sex"];
const PALETTE = { Adelie: "#e8790f", Chinstrap: "#8e44ad", Gentoo: "#138d75" };
const FALLBACK_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"];
const READY_POLL_MS = 5000;

const state = { manifest: null, points: null };
const $ = (id) => document.getElementById(id);

function colorOf(species, index) {
  return PALETTE[species] || FALLBACK_COLORS[index % FALLBACK_COLORS.length];
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, body };
}

function showStatus(message) {
  const status = $("status");
  status.textContent = message;
  status.hidden = !message;
}

function detailText(body, fallback) {
  return typeof body.detail === "string" ? body.detail : fallback;
}

// --- start-up: wait for a model, then build the form from it ---

async function start() {
  const model = await getJson("/model").catch(() => ({ ok: false, status: 0, body: {} }));
  if (!model.ok) {
    $("penguin-form").hidden = true;
    $("result").hidden = true;
    $("model-info").textContent = "No model is served yet.";
    showStatus(
      model.status === 503
        ? `${detailText(model.body, "No model yet.")} This page checks again every ${READY_POLL_MS / 1000} s.`
        : "The API does not answer. This page tries again in a few seconds."
    );
    setTimeout(start, READY_POLL_MS);
    return;
  }
  state.manifest = model.body;
  const points = await getJson("/model/training-points");
  state.points = points.ok ? points.body : null;
  showStatus("");
  describeModel(state.manifest);
  fillChoices(state.manifest);
  prefill();
  $("penguin-form").hidden = false;
}

function describeModel(manifest) {
  const metrics = manifest.metrics || {};
  const accuracy = typeof metrics.accuracy === "number" ? `, held-out accuracy ${(100 * metrics.accuracy).toFixed(1)}%` : "";
  $("model-info").textContent = `Model ${manifest.version}${accuracy}, trained on ${manifest.data.rows_train} penguins.`;
}

function fillChoices(manifest) {
  for (const spec of manifest.features.categorical) {
    const select = $(spec.name);
    if (!select) continue;
    const previous = select.value;
    select.replaceChildren();
    for (const category of spec.categories) {
      const option = document.createElement("option");
      option.value = category;
      option.textContent = category;
      select.append(option);
    }
    if (spec.categories.includes(previous)) select.value = previous;
  }
}

// A real penguin of the training data (the first one), so the first prediction is a realistic one.
function prefill() {
  if ($("bill_length_mm").value) return;
  if (state.points && state.points.pca1.length) setPenguin(trainingPenguin(0), false);
}

function trainingPenguin(index) {
  const p = state.points;
  const penguin = {};
  for (const name of [...MEASURES, ...CATEGORIES]) penguin[name] = p[name][index];
  return penguin;
}

function setPenguin(penguin, jitter) {
  for (const name of MEASURES) {
    let value = penguin[name];
    if (jitter) value *= 1 + (Math.random() + Math.random() - 1) * 0.03;  // about +-1.5%, peaked at 0
    $(name).value = name.endsWith("_g") || name.startsWith("flipper") ? Math.round(value) : value.toFixed(1);
  }
  for (const name of CATEGORIES) $(name).value = penguin[name];
}

function randomPenguin() {
  if (!state.points || !state.points.pca1.length) return;
  setPenguin(trainingPenguin(Math.floor(Math.random() * state.points.pca1.length)), true);
  predict();
}

// --- predicting ---

function clearErrors() {
  for (const name of [...MEASURES, ...CATEGORIES, "form"]) {
    $(`error-${name}`).textContent = "";
    const input = $(name);
    if (input) input.removeAttribute("aria-invalid");
  }
}

function showError(field, message) {
  const target = $(`error-${field}`) ? field : "form";
  $(`error-${target}`).textContent = message;
  if ($(target)) $(target).setAttribute("aria-invalid", "true");
}

function readForm() {
  const body = {};
  let valid = true;
  for (const name of MEASURES) {
    const text = $(name).value.trim().replace(",", ".");
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) {
      showError(name, "Enter a number.");
      valid = false;
    }
    body[name] = value;
  }
  for (const name of CATEGORIES) body[name] = $(name).value;
  return valid ? body : null;
}

async function predict(event) {
  if (event) event.preventDefault();
  clearErrors();
  const body = readForm();
  if (!body) return;
  $("predict").disabled = true;
  try {
    const response = await fetch("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      render(answer);
    } else if (response.status === 422 && Array.isArray(answer.detail)) {
      for (const error of answer.detail) showError(error.loc[error.loc.length - 1], error.msg);
    } else if (response.status === 503) {
      start();
    } else {
      showError("form", detailText(answer, `The API answered ${response.status}.`));
    }
  } catch (error) {
    showError("form", "The API does not answer: is it running?");
  } finally {
    $("predict").disabled = false;
  }
}

// --- the answer ---

function render(answer) {
  if (state.manifest && answer.model_version !== state.manifest.version) {
    start();  // a new model was promoted: refresh the choices and the chart's training points
  }
  $("species").textContent = answer.species;
  const warnings = $("warnings");
  warnings.replaceChildren(
    ...answer.warnings.map((warning) => {
      const item = document.createElement("li");
      item.textContent = warning.message;
      return item;
    })
  );
  renderProbabilities(answer.probabilities);
  renderNeighbors(answer.neighbors);
  $("result").hidden = false;
  renderChart(answer);
}

function renderProbabilities(probabilities) {
  const rows = Object.entries(probabilities).map(([species, p], index) => {
    const row = document.createElement("div");
    row.className = "probability";
    const name = document.createElement("span");
    name.textContent = species;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    bar.style.background = colorOf(species, index);
    track.append(bar);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(0)}%`;
    row.append(name, track, value);
    return row;
  });
  $("probabilities").replaceChildren(...rows);
}

function cell(text, numeric) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "number";
  return td;
}

function renderNeighbors(neighbors) {
  const rows = neighbors.map((n) => {
    const tr = document.createElement("tr");
    tr.append(
      cell(n.species), cell(n.island), cell(n.sex),
      cell(n.bill_length_mm.toFixed(1), true), cell(n.bill_depth_mm.toFixed(1), true),
      cell(n.flipper_length_mm.toFixed(0), true), cell(n.body_mass_g.toFixed(0), true),
      cell(n.distance.toFixed(3), true)
    );
    return tr;
  });
  $("neighbors").tBodies[0].replaceChildren(...rows);
}

function renderChart(answer) {
  if (typeof Plotly === "undefined") {
    $("chart").textContent = "The chart library did not load.";
    return;
  }
  const traces = [];
  const p = state.points;
  if (p) {
    p.classes.forEach((species, index) => {
      const x = [], y = [];
      p.species.forEach((label, i) => { if (label === index) { x.push(p.pca1[i]); y.push(p.pca2[i]); } });
      traces.push({
        type: "scatter", mode: "markers", name: species, x, y, hoverinfo: "name",
        marker: { color: colorOf(species, index), size: 6, opacity: 0.45 },
      });
    });
  }
  traces.push({
    type: "scatter", mode: "markers", name: "5 nearest",
    x: answer.neighbors.map((n) => n.pca.x), y: answer.neighbors.map((n) => n.pca.y), hoverinfo: "name",
    marker: { size: 14, color: "rgba(0,0,0,0)", line: { color: "#1d2733", width: 2 } },
  });
  traces.push({
    type: "scatter", mode: "markers", name: "this penguin", x: [answer.pca.x], y: [answer.pca.y],
    marker: { symbol: "star", size: 20, color: "#ffd60a", line: { color: "#1d2733", width: 1.5 } },
  });
  const layout = {
    margin: { l: 40, r: 10, t: 10, b: 40 },
    xaxis: { title: { text: "PCA 1" }, zeroline: false },
    yaxis: { title: { text: "PCA 2" }, zeroline: false },
    legend: { orientation: "h", y: -0.18 },
    hovermode: "closest",
  };
  Plotly.react("chart", traces, layout, { responsive: true, displaylogo: false });
}

document.addEventListener("DOMContentLoaded", () => {
  $("penguin-form").addEventListener("submit", predict);
  $("random").addEventListener("click", randomPenguin);
  start();
});
