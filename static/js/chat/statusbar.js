// The status bar: the model's state (or the queue ahead), its memory, the
// conversation's tokens and the last answer's speed; the models' state polled.
import { getJSON } from "../http.js";
import { $, fmtBytes } from "./dom.js";
import { currentModelName, refillModels } from "./settings.js";
import { modelInfo, state } from "./state.js";

const bar = { model: $("sb-model"), memory: $("sb-memory"), tokens: $("sb-tokens"), speed: $("sb-speed") };

export function renderStatus() {
  const model = modelInfo(currentModelName());
  const { queueAhead, lastSpeed } = state;
  let text;
  if (!model) text = "No model";
  else if (!model.available) text = `${model.display_name}: ${model.reason}`;
  else if (queueAhead != null) text = `${model.display_name}: in the queue, ${queueAhead} ahead`;
  else text = `${model.display_name}: ${model.state}${model.waiting ? `, ${model.waiting} waiting` : ""}`;
  bar.model.textContent = text;
  bar.memory.textContent = model?.memory_total ? `Memory ${fmtBytes(model.memory_used)} / ${fmtBytes(model.memory_total)}` : "";
  const totals = state.conversation?.totals;
  bar.tokens.textContent = totals ? `Tokens in ${totals.prompt_tokens.toLocaleString()} · out ${totals.completion_tokens.toLocaleString()}` : "";
  bar.speed.textContent =
    lastSpeed && lastSpeed.ttft != null
      ? `Last answer: first token ${Math.round(lastSpeed.ttft)} ms · ${lastSpeed.tps ? lastSpeed.tps.toFixed(1) : "?"} tok/s`
      : "";
}

export async function refreshStatus() {
  try {
    state.choices = await getJSON("/models/status");
    refillModels();
    renderStatus();
  } catch {
    // a blip: the next poll tries again
  }
}

export function pollStatus() {
  setInterval(() => {
    if (document.visibilityState === "visible") refreshStatus();
  }, 10_000);
}
