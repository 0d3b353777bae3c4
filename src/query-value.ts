import { InvalidQueryError } from "./errors.js";

/**
 * The one value of a query parameter; a parameter given several times is a 400. Shared by the
 * routes, the Mercure adapter and auth (a token in `?authorization=`), so it lives below all three.
 */
export function singleQueryValue(name: string, value: string | string[] | undefined): string | undefined {
  if (Array.isArray(value)) throw new InvalidQueryError(`Give ${name} once, not ${value.length} times`);
  return value;
}
