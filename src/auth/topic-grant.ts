/** What a `{name}` matches: one segment, the characters RFC 6570 simple expansion leaves unencoded. */
const SEGMENT = "[A-Za-z0-9_.~-]+";
/** What a `{+name}` matches: any run of topic characters, `/` included (RFC 6570 reserved expansion). */
const REST = "[A-Za-z0-9_.:/@~-]+";
const EXPRESSION = /\{(\+?)[A-Za-z0-9_]+\}/g;
const WELL_FORMED_TEMPLATE = /^(?:[^{}]|\{\+?[A-Za-z0-9_]+\})*$/;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** One URI template as a regular expression source, or `undefined` when it uses a form Herald does not match. */
function templateSource(template: string): string | undefined {
  if (!WELL_FORMED_TEMPLATE.test(template)) return undefined;
  let source = "";
  let last = 0;
  for (const match of template.matchAll(EXPRESSION)) {
    source += escapeRegExp(template.slice(last, match.index)) + (match[1] === "+" ? REST : SEGMENT);
    last = match.index + match[0].length;
  }
  return source + escapeRegExp(template.slice(last));
}

/**
 * The topics one claim list covers (a token's `mercure.publish` or `mercure.subscribe`). Each entry
 * is `*` (every topic), an exact topic, or a URI template: `{name}` stands for one segment
 * (`orders/{id}` covers `orders/42`, not `orders/42/items`) and `{+name}` for the rest of the topic,
 * `/` included (`orders/{+rest}` covers both). Other template forms and non-string entries cover
 * nothing. Built once per verified token; `covers` is a set lookup, then one regular expression.
 * The entries come from tokens signed with Herald's key, so the expressions are the issuer's, never
 * a client's.
 */
export class TopicGrant {
  /** Covers every topic: the list held `*`. */
  readonly all: boolean;
  readonly #exact = new Set<string>();
  readonly #templates: RegExp | undefined;

  constructor(entries: unknown) {
    const sources: string[] = [];
    let all = false;
    for (const entry of Array.isArray(entries) ? entries : []) {
      if (typeof entry !== "string") continue;
      if (entry === "*") all = true;
      else if (!entry.includes("{")) this.#exact.add(entry);
      else {
        const source = templateSource(entry);
        if (source !== undefined) sources.push(source);
      }
    }
    this.all = all;
    this.#templates = sources.length > 0 ? new RegExp(`^(?:${sources.join("|")})$`) : undefined;
  }

  /** True when the list covers `topic`. */
  covers(topic: string): boolean {
    return this.all || this.#exact.has(topic) || (this.#templates?.test(topic) ?? false);
  }
}
