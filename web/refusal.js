// Herald's refusals, told to a person at a browser: token errors get advice for this page (paste a
// token under Token) instead of the API's advice for curl users (send an Authorization header).

const ADVICE = "Paste one under Token, at the top of the page.";
/** The API message's advice, after its last colon, is for HTTP clients; the page gives its own. */
const API_ADVICE = /: (get a new one|use a token|send Authorization)[^:]*$/;

/**
 * `refused` is `{ status, code, message }` from Herald's JSON error; `missing` says what needs a
 * token ("Publishing needs a token."). Returns one line: `<status> <code>: <what to do>`.
 */
export function describeRefusal({ status, code = "", message = "" }, missing) {
  let text;
  switch (code) {
    case "HERALD_TOKEN_MISSING":
      text = `${missing} ${ADVICE}`;
      break;
    case "HERALD_TOKEN_INVALID":
    case "HERALD_TOKEN_EXPIRED":
      text = `${message.replace(API_ADVICE, "")}. Paste a fresh token under Token, at the top of the page.`;
      break;
    case "HERALD_TOPIC_FORBIDDEN":
      text = `${message.replace(API_ADVICE, "")}. Paste a token that covers it under Token, at the top of the page.`;
      break;
    default:
      text = message;
  }
  return `${status} ${code}: ${text}`.replace(/ {2,}/g, " ");
}
