// What the server says on the socket, applied to the tree and the views: an answer
// queued, resumed after a reload, streamed, finished or failed.
import { _, fmt, ngettext } from "../i18n.js";
import { $, say } from "./dom.js";
import { setTitle, updateExports } from "./header.js";
import { busy, drawMessage, renderBranch, scrollDown, statusLine, viewOf } from "./messages.js";
import { EVENT } from "./protocol.js";
import { requestSync } from "./socket.js";
import { addMessage, messages, state } from "./state.js";
import { refreshStatus, renderStatus, speedOf } from "./statusbar.js";

const prompt = $("prompt");

export function handle(event) {
  switch (event.type) {
    case EVENT.QUEUED: {
      state.sending = false;
      if (!event.regenerate) {
        addMessage({ id: event.user_message_id, parent: event.user_parent_id, role: "user", content: state.pendingText ?? "", status: "done" });
        if (state.pendingFromComposer) prompt.value = "";
        state.pendingText = null;
      }
      addMessage({ id: event.message_id, parent: event.user_message_id, role: "assistant", status: "queued", model: event.model });
      state.current = { requestId: event.request_id, messageId: event.message_id };
      const appended = messages.get(event.user_message_id).parent === state.leaf && !event.regenerate;
      state.leaf = event.message_id;
      if (appended) {
        drawMessage(messages.get(event.user_message_id));
        drawMessage(messages.get(event.message_id));
        scrollDown();
        updateExports();
      } else {
        renderBranch();
      }
      if (event.title) setTitle(event.title);
      state.queueAhead = null;
      busy(true);
      break;
    }
    case EVENT.QUEUE: {
      state.queueAhead = event.ahead;
      const view = viewOf(event.message_id);
      const text = event.ahead
        ? fmt(ngettext("Waiting in the queue: %(count)s ahead of you…", "Waiting in the queue: %(count)s ahead of you…", event.ahead), { count: event.ahead })
        : _("Next in the queue…");
      view?.setStatus(text, "muted");
      renderStatus();
      break;
    }
    case EVENT.RESUME: {
      const message = messages.get(event.message_id);
      if (!message) {
        location.reload(); // started elsewhere after this page loaded: fetch the tree again
        break;
      }
      message.content = event.content || "";
      message.reasoning = event.reasoning || "";
      if (event.steps) message.tool_steps = event.steps;
      message.status = "streaming";
      state.current = { requestId: event.request_id, messageId: event.message_id };
      state.leaf = event.message_id;
      renderBranch();
      viewOf(event.message_id)?.setStatus(_("Writing…"), "muted");
      busy(true);
      break;
    }
    case EVENT.STATUS:
      viewOf(event.message_id)?.setStatus(event.message, "muted");
      break;
    case EVENT.START: {
      state.queueAhead = null;
      const message = messages.get(event.message_id);
      if (message) message.status = "streaming";
      viewOf(event.message_id)?.setStatus(_("Writing…"), "muted");
      renderStatus();
      break;
    }
    case EVENT.DELTA: {
      const message = messages.get(event.message_id);
      if (!message) break;
      const view = viewOf(event.message_id);
      if (event.reasoning) {
        message.reasoning += event.reasoning;
        view?.addReasoning(event.reasoning);
      }
      if (event.step) {
        const steps = (message.tool_steps ||= []);
        const at = steps.findIndex((s) => s.id === event.step.id);
        if (at >= 0) steps[at] = event.step;
        else steps.push(event.step);
        view?.steps.update(event.step);
      }
      if (event.content) {
        message.content += event.content;
        view?.content.append(event.content);
      }
      if (view) scrollDown();
      break;
    }
    case EVENT.DONE: {
      const message = messages.get(event.message_id);
      if (message) {
        if (event.recovered) {
          message.content = event.content || "";
          message.reasoning = event.reasoning || "";
        }
        if (event.steps) message.tool_steps = event.steps;
        Object.assign(message, {
          status: event.status || "done",
          finish_reason: event.finish_reason,
          tokens_per_second: event.tokens_per_second,
          time_to_first_token_ms: event.time_to_first_token_ms,
        });
        const { conversation } = state;
        if (event.usage && conversation) {
          conversation.totals.prompt_tokens += event.usage.prompt_tokens || 0;
          conversation.totals.completion_tokens += event.usage.completion_tokens || 0;
        }
        if (event.time_to_first_token_ms != null) state.lastSpeed = speedOf(message);
      }
      finishCurrent(event.message_id, Boolean(event.recovered));
      break;
    }
    case EVENT.ERROR: {
      const message = event.message_id != null ? messages.get(event.message_id) : null;
      if (message && event.code !== "busy") {
        message.status = "failed";
        message.error = event.message;
        if (event.content) message.content = event.content;
        if (event.steps) message.tool_steps = event.steps;
        finishCurrent(event.message_id, Boolean(event.content));
      } else {
        if (event.message_id == null) state.sending = false; // the send was refused: nothing started
        say(event.message);
      }
      break;
    }
    case EVENT.READY:
      // After a reconnect: the answer this page was following finished while it was
      // away (nothing is active now). Ask for its stored outcome.
      if (state.current && event.active !== state.current.messageId) requestSync(state.current.messageId);
      break;
    case EVENT.TITLE:
      setTitle(event.title);
      break;
    default:
      break;
  }
}

function finishCurrent(messageId, replaced) {
  const message = messages.get(messageId);
  const view = viewOf(messageId);
  if (state.current && state.current.messageId === messageId) state.current = null;
  state.queueAhead = null;
  if (view && message) {
    if (replaced) {
      // the stored text is the truth (an outcome this page missed while reconnecting)
      view.content.set(message.content);
      view.reasoning.set("");
      view.thinking.hidden = true;
      view.addReasoning(message.reasoning);
    }
    view.steps.set(message.tool_steps);
    view.settle(message);
    view.setStatus(...statusLine(message));
  }
  busy(false);
  renderStatus();
  refreshStatus();
  setTimeout(refreshStatus, 2500); // the worker's next heartbeat says it is idle again
}
