// The status bar: the model's state (or the queue ahead), its memory, the
// conversation's tokens and the last answer's speed; the models' state polled.
import { getJSON } from "../http.js";
import { _, fmt, ngettext } from "../i18n.js";
import { $, fmtBytes } from "./dom.js";
import { currentModelName, refillModels } from "./settings.js";
import { modelInfo, state } from "./state.js";

const bar = { model: $("sb-model"), memory: $("sb-memory"), tokens: $("sb-tokens"), speed: $("sb-speed") };

// The workers' state names, as a person reads them (a name not listed here is shown as sent).
const STATES = {
  ready: _("ready"),
  busy: _("busy"),
  loading: _("loading"),
  sleeping: _("sleeping"),
  unloading: _("unloading"),
  offline: _("offline"),
  unknown: _("unknown"),
};

function modelText(model, queueAhead) {
  const name = model.display_name;
  if (!model.available) return fmt(_("%(model)s: %(reason)s"), { model: name, reason: model.reason });
  if (queueAhead != null) {
    const text = ngettext("%(model)s: in the queue, %(count)s ahead", "%(model)s: in the queue, %(count)s ahead", queueAhead);
    return fmt(text, { model: name, count: queueAhead });
  }
  const values = { model: name, state: STATES[model.state] ?? model.state, count: model.waiting };
  if (!model.waiting) return fmt(_("%(model)s: %(state)s"), values);
  return fmt(ngettext("%(model)s: %(state)s, %(count)s waiting", "%(model)s: %(state)s, %(count)s waiting", model.waiting), values);
}

export function renderStatus() {
  const model = modelInfo(currentModelName());
  const { lastSpeed } = state;
  bar.model.textContent = model ? modelText(model, state.queueAhead) : _("No model");
  bar.memory.textContent = model?.memory_total
    ? fmt(_("Memory %(used)s / %(total)s"), { used: fmtBytes(model.memory_used), total: fmtBytes(model.memory_total) })
    : "";
  const totals = state.conversation?.totals;
  bar.tokens.textContent = totals
    ? fmt(_("Tokens in %(prompt)s · out %(completion)s"), {
        prompt: totals.prompt_tokens.toLocaleString(),
        completion: totals.completion_tokens.toLocaleString(),
      })
    : "";
  let speed = "";
  if (lastSpeed && lastSpeed.ttft != null) {
    speed = fmt(_("Last answer: first token %(ms)s ms · %(speed)s tok/s"), {
      ms: Math.round(lastSpeed.ttft),
      speed: lastSpeed.tps ? lastSpeed.tps.toFixed(1) : "?",
    });
    // the search of the person's files, before the model had the question
    if (lastSpeed.search != null) speed += ` · ${fmt(_("search %(ms)s ms"), { ms: Math.round(lastSpeed.search * 1000) })}`;
  }
  bar.speed.textContent = speed;
}

// The last answer's speed as the status bar shows it: first token, tokens a second, and the
// time its search of the person's files took (null where it searched none).
export function speedOf(message) {
  const step = (message.tool_steps || []).find((s) => s && s.kind === "knowledge" && typeof s.seconds === "number");
  return { ttft: message.time_to_first_token_ms, tps: message.tokens_per_second, search: step ? step.seconds : null };
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
