// autopeft web UI, the cockpit: submit a study (spec, space and an optional dataset uploaded from
// files), stop and resume it. Writes need a token with the write scope: entered once per browser
// in the token field (kept in localStorage, as reads do).
"use strict";

async function apiWrite(method, path, body, isForm) {
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  if (!isForm) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: isForm ? body : JSON.stringify(body) });
  if (response.status === 401 || response.status === 403) {
    document.getElementById("token-form").hidden = false;
  }
  let payload = null;
  try { payload = await response.json(); } catch (e) { /* no JSON body */ }
  if (!response.ok) {
    const detail = payload && payload.detail ? payload.detail : response.statusText;
    throw new Error(`${response.status} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return payload;
}

async function readFile(input) {
  const file = input.files[0];
  return file ? file.text() : null;
}

document.getElementById("submit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("submit-status");
  try {
    const spec = await readFile(document.getElementById("submit-spec"));
    const space = await readFile(document.getElementById("submit-space"));
    if (!spec || !space) throw new Error("choose a study spec and a search space file");
    const data = document.getElementById("submit-data").files[0];
    if (data) {
      const form = new FormData();
      form.append("file", data, data.name);
      await apiWrite("POST", "/api/datasets", form, true);
    }
    const body = { spec, search_space: space };
    const name = document.getElementById("submit-name").value.trim();
    const trials = document.getElementById("submit-trials").value;
    if (name) body.name = name;
    if (trials) body.n_trials = Number(trials);
    const created = await apiWrite("POST", "/api/studies", body, false);
    status.textContent = `submitted ${created.name}`;
    location.hash = "#/study/" + encodeURIComponent(created.name);
  } catch (error) {
    status.textContent = "error: " + error.message;
  }
});

for (const [id, action] of [["stop-study", "stop"], ["resume-study", "resume"]]) {
  document.getElementById(id).addEventListener("click", async () => {
    const status = document.getElementById("control-status");
    if (!current) return;
    try {
      const result = await apiWrite("POST", `/api/studies/${encodeURIComponent(current.name)}/${action}`, {}, false);
      status.textContent = `${result.name}: ${result.state}`;
      route();
    } catch (error) {
      status.textContent = "error: " + error.message;
    }
  });
}
