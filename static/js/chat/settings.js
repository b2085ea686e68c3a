// The model picker and the parameters panel: a new chat keeps its choices until the
// first message creates it; an existing one saves them at once.
import { postJSON } from "../http.js";
import { _, fmt } from "../i18n.js";
import { $, el, say } from "./dom.js";
import { modelInfo, state } from "./state.js";

const modelSelect = $("model");
const paramsForm = $("params-form");
const paramsNote = $("params-note");
const toolsBox = $("tools");
const PARAMS = ["temperature", "top_p", "max_tokens", "repetition_penalty", "reasoning_effort"];

// The picker's value: "model-name" or "preset:<id>" (presets only before the first message).
export const modelChoice = () => modelSelect.value;

export function currentModelName() {
  if (state.conversation) return state.conversation.model;
  const value = modelSelect.value;
  if (value.startsWith("preset:")) {
    const preset = state.choices.presets.find((p) => `preset:${p.id}` === value);
    return preset?.model;
  }
  return value;
}

export function fillModels() {
  const { conversation, choices } = state;
  const selected = conversation ? conversation.model : modelSelect.value;
  modelSelect.replaceChildren();
  const group = el("optgroup", { label: _("Models") });
  for (const m of choices.models) {
    const name = m.description ? `${m.display_name} — ${m.description}` : m.display_name;
    const label = m.available ? name : fmt(_("%(name)s (unavailable: %(reason)s)"), { name, reason: m.reason });
    group.append(el("option", { value: m.name, textContent: label, disabled: !m.available && m.name !== selected }));
  }
  modelSelect.append(group);
  if (!conversation && choices.presets.length) {
    const presets = el("optgroup", { label: _("Presets") });
    for (const p of choices.presets) {
      const m = modelInfo(p.model);
      const name = p.description ? `${p.name} — ${p.description}` : p.name;
      const label = m && !m.available ? fmt(_("%(name)s (unavailable)"), { name }) : name;
      presets.append(el("option", { value: `preset:${p.id}`, textContent: label, disabled: m ? !m.available : true }));
    }
    modelSelect.append(presets);
  }
  if (!choices.models.length) {
    modelSelect.append(el("option", { value: "", textContent: _("No model is configured"), disabled: true, selected: true }));
  }
  const options = [...modelSelect.options];
  const keep = options.find((o) => o.value === selected) ?? options.find((o) => !o.disabled);
  if (keep) modelSelect.value = keep.value;
}

// After the choices were fetched again: the list redrawn, the person's pick kept if it still may be picked.
export function refillModels() {
  const selected = modelSelect.value;
  fillModels();
  if ([...modelSelect.options].some((o) => o.value === selected && !o.disabled)) modelSelect.value = selected;
}

// Calls `then` once a change of model is shown (and saved, for an existing conversation).
export function onModelChange(then) {
  modelSelect.addEventListener("change", async () => {
    fillParams();
    if (!state.conversation) return;
    try {
      const saved = await postJSON(`/c/${state.conversation.id}/settings`, { model: modelSelect.value });
      state.conversation = { ...state.conversation, ...saved };
      then();
    } catch (error) {
      say(error.message);
      modelSelect.value = state.conversation.model;
    }
  });
}

export function fillParams() {
  const model = modelInfo(currentModelName());
  const stored = state.conversation?.params ?? {};
  for (const name of PARAMS) {
    const input = paramsForm.elements[name];
    input.value = stored[name] ?? "";
    if (input.tagName === "INPUT") input.placeholder = model?.defaults?.[name] ?? "";
  }
  paramsForm.elements.system_prompt.value = state.conversation?.system_prompt ?? "";
  for (const node of paramsForm.querySelectorAll("[data-harmony-only]")) node.hidden = !model?.harmony;
  paramsNote.textContent = model ? fmt(_("Empty fields use %(model)s's defaults."), { model: model.display_name }) : "";
  fillTools(model);
}

// The built-in tools the model may use here (the site and the model's admin allow them),
// each a toggle: a new chat sends its choice with the first message, an existing one saves it.
function fillTools(model) {
  const offered = model?.tools ?? [];
  const on = state.conversation ? state.conversation.builtin_tools ?? [] : readTools();
  for (const label of toolsBox.querySelectorAll("[data-tool]")) {
    const box = label.querySelector("input");
    label.hidden = !offered.includes(box.value);
    box.checked = !label.hidden && on.includes(box.value);
  }
  toolsBox.hidden = !offered.length;
}

export const readTools = () => [...toolsBox.querySelectorAll("input:checked")].filter((box) => !box.closest("[hidden]")).map((box) => box.value);

toolsBox.addEventListener("change", async () => {
  if (!state.conversation) return;
  try {
    const saved = await postJSON(`/c/${state.conversation.id}/settings`, { builtin_tools: readTools() });
    state.conversation = { ...state.conversation, ...saved };
  } catch (error) {
    say(error.message);
    fillTools(modelInfo(currentModelName()));
  }
});

export function readParams() {
  const params = {};
  let changed = false;
  for (const name of PARAMS) {
    const value = paramsForm.elements[name].value.trim();
    if (value === "") continue;
    params[name] = name === "reasoning_effort" ? value : Number(value);
    changed = true;
  }
  const system_prompt = paramsForm.elements.system_prompt.value;
  return { params, system_prompt, changed: changed || system_prompt !== "" };
}

paramsForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const { params, system_prompt } = readParams();
  if (!state.conversation) {
    paramsNote.textContent = _("Kept for this new chat; saved when you send the first message.");
    return;
  }
  try {
    const saved = await postJSON(`/c/${state.conversation.id}/settings`, { params, system_prompt });
    state.conversation = { ...state.conversation, ...saved };
    paramsNote.textContent = _("Saved for this conversation.");
  } catch (error) {
    paramsNote.textContent = error.message;
  }
});

$("params-reset").addEventListener("click", () => {
  for (const name of PARAMS) paramsForm.elements[name].value = "";
  paramsForm.requestSubmit();
});
