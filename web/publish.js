// The publish form: POST /events as JSON. Data is sent as text, or parsed as JSON first (and
// refused before sending when it does not parse). Shows the id Herald answers or its error message.

import { describeRefusal } from "./refusal.js";

/**
 * Wires the form `form`. `onPublished(answer)` runs after each accepted publish and may return a
 * note to show after the id; `token()` gives the token to send as a Bearer token, if any.
 */
export function createPublishForm(form, { onPublished, token } = {}) {
  const field = (name) => form.elements.namedItem(name);
  const data = field("data");
  const dataError = form.querySelector("#data-error");
  const result = form.querySelector("#publish-result");
  const submit = form.querySelector("button[type=submit]");
  const isJson = () => field("format").value === "json";

  /** The data to send, or an Error saying why it cannot be sent. */
  const parseData = () => {
    if (!isJson()) return data.value;
    try {
      return JSON.parse(data.value);
    } catch (err) {
      return new Error(`Not valid JSON: ${err.message}`);
    }
  };

  const clearResult = () => {
    result.textContent = "";
    delete result.dataset.outcome;
  };

  const checkData = () => {
    const value = isJson() && data.value.trim() !== "" ? parseData() : undefined;
    const message = value instanceof Error ? value.message : "";
    data.setCustomValidity(message);
    data.setAttribute("aria-invalid", String(message !== ""));
    dataError.textContent = message;
    dataError.hidden = message === "";
    // The outcome of the last publish is not this data's: a green "Published" must not sit under an error.
    if (message !== "") clearResult();
    return message === "";
  };

  const show = (text, ok) => {
    result.textContent = text;
    result.dataset.outcome = ok ? "ok" : "error";
  };

  data.addEventListener("input", checkData);
  for (const radio of form.querySelectorAll("input[name=format]")) radio.addEventListener("change", checkData);
  // Ctrl+Enter (or Cmd+Enter) in the data box publishes, as in chat and mail apps.
  data.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!checkData()) {
      data.focus();
      return;
    }
    const body = { data: parseData() };
    for (const name of ["topic", "event", "id"]) {
      const value = field(name).value.trim();
      if (value !== "") body[name] = value;
    }
    const retry = field("retry").value.trim();
    if (retry !== "") body.retry = Number(retry);
    if (field("private").checked) body.private = true;

    submit.disabled = true;
    show("Publishing…", true);
    try {
      const bearer = token?.();
      const response = await fetch("/events", {
        method: "POST",
        headers: { "content-type": "application/json", ...(bearer && { authorization: `Bearer ${bearer}` }) },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) {
        // Private is a choice per event: the next one is public unless ticked again.
        field("private").checked = false;
        const note = onPublished?.(answer) ?? "";
        show(
          `Published #${answer.id} on ${answer.topic}${answer.duplicate ? " (already in history)" : ""}${note}`,
          true,
        );
      } else {
        const refused = { status: response.status, code: answer.code, message: answer.message ?? response.statusText };
        show(describeRefusal(refused, "Publishing needs a token."), false);
      }
    } catch (err) {
      show(`Herald did not answer: ${err.message}`, false);
    } finally {
      submit.disabled = false;
    }
  });
}
