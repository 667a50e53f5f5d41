// jobworks dashboard: follows a job page live and selects rows; every page works without it.
"use strict";
(function () {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  const timeline = document.getElementById("timeline");
  if (timeline && timeline.dataset.live) {
    follow(timeline);
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function show(state) {
    const badge = document.querySelector("#job-status .status");
    if (badge) {
      badge.textContent = state.status;
      badge.className = "status s-" + state.status;
    }
    const box = document.getElementById("job-progress");
    if (box && state.progress) {
      box.hidden = false;
      const bar = document.getElementById("progress-bar");
      bar.value = state.progress.fraction;
      bar.textContent = Math.round(state.progress.fraction * 100) + " %";
      document.getElementById("progress-message").textContent = state.progress.message;
    }
  }

  async function follow(table) {
    const body = table.tBodies[0];
    const note = document.getElementById("live-state");
    let after = Number(table.dataset.after || 0);
    let failures = 0;
    for (;;) {
      try {
        const answer = await fetch(table.dataset.live + "?after=" + after, {
          headers: { accept: "application/json" },
          credentials: "same-origin",
        });
        if (!answer.ok) throw new Error("status " + answer.status);
        const state = await answer.json();
        failures = 0;
        for (const e of state.events) {
          const row = document.createElement("tr");
          cell(row, String(e.seq), "num");
          const at = cell(row, "");
          const time = document.createElement("time");
          time.dateTime = e.at;
          time.textContent = e.shown;
          at.appendChild(time);
          cell(row, e.kind);
          cell(row, e.message);
          body.appendChild(row);
          after = Math.max(after, e.seq);
        }
        show(state);
        if (state.terminal) {
          if (note) note.textContent = "Finished: reloading for the outcome.";
          location.reload();
          return;
        }
      } catch (error) {
        failures += 1;
        if (failures > 5) {
          if (note) note.textContent = "Live updates stopped (" + error.message + "); reload to resume.";
          return;
        }
        await sleep(1000 * failures);
      }
    }
  }
})();
