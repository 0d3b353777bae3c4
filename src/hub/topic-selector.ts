/**
 * Topic selectors: `*`, an exact topic, or an RFC 6570 URI template, matched as the Mercure hub
 * (v0.24.2) matches them. A template is a regular language, so it is compiled here into a small
 * automaton (literal characters, character-class loops and `%XX` triplets) and run as an NFA
 * simulation: one pass over the topic, O(topic length × template length) whatever the template.
 * No regular expression is built: V8's backtracking made `{+a}{+b}{+c}{+d}x` cost 606 ms on one
 * 256-character topic.
 *
 * What an expression matches (each is optional as a whole; `:N` prefixes are ignored):
 * - `{v}`, and the values of `{.v}`, `{/v}`, `{;v}`, `{?v}`, `{&v}`: unreserved characters
 *   (`A-Z a-z 0-9 - . _ ~`), `,`, and `%XX`; so `{v}` never crosses a `/`.
 * - `{+v}` and `{#v}`: unreserved and reserved characters (`:/?#[]@!$&'()*+,;=`) and `%XX`;
 *   so `{+v}` spans segments.
 * - `{.v}`, `{/v}`, `{;v}`, `{?v}`, `{&v}`, `{#v}` start with their operator character; several
 *   variables (`{a,b}`) or an explode (`{v*}`) repeat the value after the operator's separator.
 * A selector with `{` that is not a well-formed template matches only itself, exactly.
 */

/** `*` selects every topic. */
export const ANY_TOPIC = "*";

/** Compiled selectors kept; past it the oldest is dropped (it is recompiled if used again). */
const CACHE_SIZE = 10_000;

// Instruction kinds of the automaton.
const MATCH = 0;
const CHAR = 1;
const CLASS = 2;
const SPLIT = 3;

type Instruction =
  | { kind: typeof MATCH }
  | { kind: typeof CHAR; code: number; next: number }
  | { kind: typeof CLASS; set: Uint8Array; next: number }
  | { kind: typeof SPLIT; to: number[] };

function asciiSet(chars: string, ranges: [string, string][] = []): Uint8Array {
  const set = new Uint8Array(128);
  for (const c of chars) set[c.charCodeAt(0)] = 1;
  for (const [from, to] of ranges) for (let c = from.charCodeAt(0); c <= to.charCodeAt(0); c++) set[c] = 1;
  return set;
}

const ALNUM: [string, string][] = [
  ["A", "Z"],
  ["a", "z"],
  ["0", "9"],
];
const UNRESERVED = "-._~";
const RESERVED = ":/?#[]@!$&'()*+,;=";
const HEX = asciiSet("", [
  ["0", "9"],
  ["A", "F"],
  ["a", "f"],
]);
/** Value characters: unreserved and `,` (`U`); with `=` for named operators and explodes (`U=`); unreserved and reserved (`UR`). */
const VALUE_U = asciiSet(`${UNRESERVED},`, ALNUM);
const VALUE_U_NAMED = asciiSet(`${UNRESERVED},=`, ALNUM);
const VALUE_UR = asciiSet(UNRESERVED + RESERVED, ALNUM);

interface Operator {
  readonly first: string;
  readonly sep: string;
  readonly named: boolean;
  readonly reserved: boolean;
}

const SIMPLE: Operator = { first: "", sep: ",", named: false, reserved: false };
const OPERATORS: Record<string, Operator> = {
  "+": { first: "", sep: ",", named: false, reserved: true },
  "#": { first: "#", sep: ",", named: false, reserved: true },
  ".": { first: ".", sep: ".", named: false, reserved: false },
  "/": { first: "/", sep: "/", named: false, reserved: false },
  ";": { first: ";", sep: ";", named: true, reserved: false },
  "?": { first: "?", sep: "&", named: true, reserved: false },
  "&": { first: "&", sep: "&", named: true, reserved: false },
};

/** One `{...}` after parsing: its operator, how many variables, and whether any explodes. */
interface Expression {
  readonly op: Operator;
  readonly vars: number;
  readonly explode: boolean;
  /** The first variable explodes (its value may hold `=`). */
  readonly firstExplodes: boolean;
}
type Part = string | Expression;

/** Characters a template literal may hold outside `%XX`: RFC 6570 §2.1, as the Go library reads it. */
function isLiteralChar(code: number): boolean {
  if (code < 0x80) {
    // ! # $ & ( - ; = ? - [ ] _ a - z ~
    return (
      code === 0x21 ||
      code === 0x23 ||
      code === 0x24 ||
      code === 0x26 ||
      (code >= 0x28 && code <= 0x3b) ||
      code === 0x3d ||
      (code >= 0x3f && code <= 0x5b) ||
      code === 0x5d ||
      code === 0x5f ||
      (code >= 0x61 && code <= 0x7a) ||
      code === 0x7e
    );
  }
  // ucschar and iprivate; surrogates are checked as pairs by the caller.
  return code >= 0xa0 && !(code >= 0xfdd0 && code <= 0xfdef) && code !== 0xfffe && code !== 0xffff;
}

function isHex(code: number): boolean {
  return code < 128 && HEX[code] === 1;
}

/** Splits a template into literals and expressions; `undefined` when it is not well-formed. */
function parseTemplate(template: string): Part[] | undefined {
  const parts: Part[] = [];
  let literal = "";
  let i = 0;
  while (i < template.length) {
    const code = template.charCodeAt(i);
    if (code === 0x7b /* { */) {
      if (literal !== "") parts.push(literal);
      literal = "";
      const end = template.indexOf("}", i + 1);
      if (end === -1) return undefined;
      const expression = parseExpression(template.slice(i + 1, end));
      if (expression === undefined) return undefined;
      parts.push(expression);
      i = end + 1;
    } else if (code === 0x25 /* % */) {
      if (!isHex(template.charCodeAt(i + 1)) || !isHex(template.charCodeAt(i + 2))) return undefined;
      literal += template.slice(i, i + 3);
      i += 3;
    } else if (code >= 0xd800 && code <= 0xdbff) {
      const low = template.charCodeAt(i + 1);
      if (!(low >= 0xdc00 && low <= 0xdfff)) return undefined;
      literal += template.slice(i, i + 2);
      i += 2;
    } else {
      if (!isLiteralChar(code) || (code >= 0xdc00 && code <= 0xdfff)) return undefined;
      literal += template[i];
      i++;
    }
  }
  if (literal !== "") parts.push(literal);
  return parts;
}

/** One varspec: a name of `A-Z a-z 0-9 _` and `%XX` (possibly empty, as the Go library allows), then `*` or `:N`. */
const VARSPEC = /^(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})*(\*|:[1-9][0-9]{0,3})?$/;

/** The inside of `{...}`: an optional operator, then varspecs separated by `,`. */
function parseExpression(body: string): Expression | undefined {
  const first = body[0] ?? "";
  const op = OPERATORS[first];
  if (op === undefined && first !== "" && "=,!@|".includes(first)) return undefined;
  const specs = (op === undefined ? body : body.slice(1)).split(",");
  let explode = false;
  let firstExplodes = false;
  for (const [i, spec] of specs.entries()) {
    const match = VARSPEC.exec(spec);
    if (match === null) return undefined;
    if (match[1] === "*") {
      explode = true;
      if (i === 0) firstExplodes = true;
    }
  }
  return { op: op ?? SIMPLE, vars: specs.length, explode, firstExplodes };
}

/** Builds the automaton of a parsed template. */
class Compiler {
  readonly program: Instruction[] = [];

  emit(instruction: Instruction): number {
    this.program.push(instruction);
    return this.program.length - 1;
  }

  /** Placeholder SPLIT to be filled once its targets are known. */
  split(): { kind: typeof SPLIT; to: number[] } {
    const instruction = { kind: SPLIT, to: [] as number[] } as const;
    this.program.push(instruction);
    return instruction;
  }

  get here(): number {
    return this.program.length;
  }

  literal(text: string): void {
    for (let i = 0; i < text.length; i++) this.emit({ kind: CHAR, code: text.charCodeAt(i), next: this.here + 1 });
  }

  /** `(class | %XX)*`. */
  values(set: Uint8Array): void {
    const loop = this.here;
    const fork = this.split();
    const one = this.emit({ kind: CLASS, set, next: loop });
    const pct = this.emit({ kind: CHAR, code: 0x25, next: this.here + 1 });
    this.emit({ kind: CLASS, set: HEX, next: this.here + 1 });
    this.emit({ kind: CLASS, set: HEX, next: loop });
    fork.to.push(one, pct, this.here);
  }

  expression({ op, vars, explode, firstExplodes }: Expression): void {
    const skip = this.split();
    const start = this.here;
    this.literal(op.first);
    const firstSet = op.reserved ? VALUE_UR : op.named || firstExplodes ? VALUE_U_NAMED : VALUE_U;
    this.values(firstSet);
    const restSet = op.reserved ? VALUE_UR : op.named || explode ? VALUE_U_NAMED : VALUE_U;
    if (explode) {
      const loop = this.here;
      const fork = this.split();
      const body = this.here;
      this.literal(op.sep);
      this.values(restSet);
      this.emit({ kind: SPLIT, to: [loop] });
      fork.to.push(body, this.here);
    } else {
      const forks: { to: number[] }[] = [];
      for (let k = 1; k < vars; k++) {
        const fork = this.split();
        forks.push(fork);
        fork.to.push(this.here);
        this.literal(op.sep);
        this.values(restSet);
      }
      for (const fork of forks) fork.to.push(this.here);
    }
    skip.to.push(start, this.here);
  }
}

/** A compiled template: runs its automaton over a topic. */
class TemplateMatcher {
  readonly #program: Instruction[];
  /** Per-instruction mark of the step that last added it, so each state is added once per step. */
  readonly #mark: Uint32Array;
  #step = 0;
  #current: number[] = [];
  #next: number[] = [];

  constructor(program: Instruction[]) {
    this.#program = program;
    this.#mark = new Uint32Array(program.length);
  }

  matches(topic: string): boolean {
    this.#current.length = 0;
    this.#newStep();
    this.#add(this.#current, 0);
    for (let i = 0; i < topic.length && this.#current.length > 0; i++) {
      const code = topic.charCodeAt(i);
      this.#next.length = 0;
      this.#newStep();
      for (const pc of this.#current) {
        const instruction = this.#program[pc] as Instruction;
        if (instruction.kind === CHAR) {
          if (instruction.code === code) this.#add(this.#next, instruction.next);
        } else if (instruction.kind === CLASS) {
          if (code < 128 && instruction.set[code] === 1) this.#add(this.#next, instruction.next);
        }
      }
      [this.#current, this.#next] = [this.#next, this.#current];
    }
    for (const pc of this.#current) if (this.#program[pc]?.kind === MATCH) return true;
    return false;
  }

  #newStep(): void {
    this.#step++;
    if (this.#step === 0xffffffff) {
      this.#mark.fill(0);
      this.#step = 1;
    }
  }

  /** Adds `pc` and, through SPLITs, every state it reaches without reading a character. */
  #add(list: number[], pc: number): void {
    if (this.#mark[pc] === this.#step) return;
    this.#mark[pc] = this.#step;
    const instruction = this.#program[pc] as Instruction;
    if (instruction.kind === SPLIT) for (const to of instruction.to) this.#add(list, to);
    else list.push(pc);
  }
}

/**
 * One selector, compiled. `matches(topic)` is true for `*`, for the selector itself, and for
 * every topic its template (if it is one) describes.
 */
export class TopicSelector {
  /** Selects every topic. */
  readonly any: boolean;
  /** True when the selector is a well-formed URI template with at least one expression. */
  readonly template: boolean;
  readonly #matcher: TemplateMatcher | undefined;
  /** The literal text before the first expression and after the last: checked first, without the automaton. */
  readonly #prefix: string = "";
  readonly #suffix: string = "";

  constructor(readonly source: string) {
    this.any = source === ANY_TOPIC;
    const parts = source.includes("{") ? parseTemplate(source) : undefined;
    if (parts === undefined || parts.every((part) => typeof part === "string")) {
      this.template = false;
      this.#matcher = undefined;
      return;
    }
    if (typeof parts[0] === "string") this.#prefix = parts.shift() as string;
    if (typeof parts.at(-1) === "string") this.#suffix = parts.pop() as string;
    const compiler = new Compiler();
    for (const part of parts) {
      if (typeof part === "string") compiler.literal(part);
      else compiler.expression(part);
    }
    compiler.emit({ kind: MATCH });
    this.template = true;
    this.#matcher = new TemplateMatcher(compiler.program);
  }

  matches(topic: string): boolean {
    if (this.any || topic === this.source) return true;
    const matcher = this.#matcher;
    if (matcher === undefined) return false;
    const prefix = this.#prefix;
    const suffix = this.#suffix;
    if (topic.length < prefix.length + suffix.length || !topic.startsWith(prefix) || !topic.endsWith(suffix))
      return false;
    return matcher.matches(topic.slice(prefix.length, topic.length - suffix.length));
  }
}

const cache = new Map<string, TopicSelector>();

/**
 * The compiled selector for `source`, from a process-wide cache of `CACHE_SIZE` entries: each
 * distinct selector is compiled once while it stays in use.
 */
export function compileSelector(source: string): TopicSelector {
  let selector = cache.get(source);
  if (selector !== undefined) return selector;
  selector = new TopicSelector(source);
  if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  cache.set(source, selector);
  return selector;
}

/** True when `source` is a well-formed URI template (so it selects more than itself). */
export function isTemplate(source: string): boolean {
  return compileSelector(source).template;
}
